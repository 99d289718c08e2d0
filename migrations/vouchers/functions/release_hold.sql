-- vouchers.release_hold(): a hold's amount is available again; the release entry and its event record who
-- released it and why (actor, memo "<status>: <reason>"; `released_by`, `reason`). The bureau's release, a void and
-- an expiry pass them; the vendor's own release and the sweep of expired holds call the four-argument form, which
-- answers as before (actor: the vendor, memo: the status).
--
-- version: 3
-- Versions: 1 migration 0002; 2 migration 0007 (its event); 3 migration 0014 (who released it and why).
-- Migrations load a version by number (shared.migrations.sql_functions): this file is the current one;
-- an older one is this file with history/release_hold.<n>.diff applied, down from the current version.

CREATE OR REPLACE FUNCTION vouchers.release_hold(p_redemption bigint, p_status text, p_now timestamptz, p_request_id text,
                                      p_actor text, p_reason text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r vouchers.redemptions%ROWTYPE;
    v vouchers.vouchers%ROWTYPE;
    l_entry bigint;
    l_actor text;
BEGIN
    UPDATE vouchers.redemptions SET status = p_status, updated_at = p_now
     WHERE id = p_redemption AND status = 'held' RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    l_actor := coalesce(p_actor, r.vendor);
    UPDATE vouchers.vouchers SET held_fen = held_fen - r.amount_fen, available_fen = available_fen + r.amount_fen
     WHERE id = r.voucher_id RETURNING * INTO v;
    IF v.kind = 'M3' THEN
        UPDATE vouchers.allowances SET used_fen = used_fen - r.amount_fen
         WHERE holder = v.holder AND year = r.year AND kind = 'M3.redemptions';
    END IF;
    INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, redemption_id,
                                  actor, request_id, memo)
         VALUES ('release', v.hold_account_id, v.account_id, r.amount_fen, v.id, r.id, l_actor, p_request_id,
                 CASE WHEN p_reason IS NULL THEN p_status ELSE p_status || ': ' || p_reason END)
      RETURNING id INTO l_entry;
    INSERT INTO vouchers.outbox (type, subject, organisation, vendor, payload)
         VALUES ('vouchers.hold.' || p_status, v.code, v.holder, r.vendor,
                 jsonb_build_object('id', r.id, 'voucher_code', v.code, 'vendor', r.vendor, 'holder', v.holder,
                     'voucher_kind', v.kind, 'amount_fen', r.amount_fen, 'status', p_status, 'entry_id', l_entry,
                     'invoice_number', r.invoice_number, 'contract_number', r.contract_number,
                     'released_by', l_actor, 'reason', p_reason,
                     'voucher', jsonb_build_object('available_fen', v.available_fen, 'held_fen', v.held_fen,
                                                   'redeemed_fen', v.redeemed_fen, 'amount_fen', v.amount_fen)));
    RETURN l_entry;
END $$;
-- ;;
CREATE OR REPLACE FUNCTION vouchers.release_hold(p_redemption bigint, p_status text, p_now timestamptz,
                                                 p_request_id text)
RETURNS void LANGUAGE sql AS $$
    SELECT vouchers.release_hold(p_redemption, p_status, p_now, p_request_id, NULL, NULL);
$$;
