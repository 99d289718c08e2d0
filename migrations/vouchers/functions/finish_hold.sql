-- vouchers.finish_hold(): capture a hold (it becomes a redemption, with its event) or release it (release_hold);
-- idempotent like redeem().
--
-- It runs with enable_seqscan off (version 3): its statements reach rows by key only, and PL/pgSQL keeps each
-- statement's plan for the session. A plan made while a table was small (a fresh database) scanned the table
-- whole, and went on doing so as the table grew: a benchmark's batch check read all of vouchers.idempotency.
--
-- version: 3
-- Versions: 1 migration 0002; 2 migration 0007 (the capture's event); 3 migration 0024 (enable_seqscan off).
-- Migrations load a version by number (shared.migrations.sql_functions): this file is the current one;
-- an older one is this file with history/finish_hold.<n>.diff applied, down from the current version.

CREATE OR REPLACE FUNCTION vouchers.finish_hold(
    p_client text, p_key text, p_hash text,
    p_redemption bigint, p_vendor text, p_action text, p_now timestamptz, p_request_id text,
    OUT status_code int, OUT body text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    l_claimed record;
    r vouchers.redemptions%ROWTYPE;
    v vouchers.vouchers%ROWTYPE;
    l_entry bigint;
    l_result jsonb;
BEGIN
    SELECT * INTO l_claimed FROM vouchers.claim_key(p_client, p_key, p_hash);
    IF NOT l_claimed.fresh THEN
        status_code := l_claimed.status_code;
        body := l_claimed.body;
        RETURN;
    END IF;
    SELECT * INTO r FROM vouchers.redemptions WHERE id = p_redemption AND vendor = p_vendor FOR UPDATE;
    IF NOT FOUND THEN
        status_code := 404;
        l_result := jsonb_build_object('code', 'hold_not_found', 'params', jsonb_build_object('id', p_redemption));
    ELSIF r.status <> 'held' OR r.hold_expires_at <= p_now THEN
        IF r.status = 'held' THEN
            PERFORM vouchers.release_hold(r.id, 'expired', p_now, p_request_id);
            r.status := 'expired';
        END IF;
        status_code := 409;
        l_result := jsonb_build_object('code', 'hold_not_active',
            'params', jsonb_build_object('id', r.id, 'status', r.status));
    ELSIF p_action = 'release' THEN
        PERFORM vouchers.release_hold(r.id, 'released', p_now, p_request_id);
        status_code := 200;
        l_result := jsonb_build_object('id', r.id, 'status', 'released', 'amount_fen', r.amount_fen);
    ELSE
        UPDATE vouchers.vouchers SET held_fen = held_fen - r.amount_fen, redeemed_fen = redeemed_fen + r.amount_fen
         WHERE id = r.voucher_id RETURNING * INTO v;
        UPDATE vouchers.redemptions SET status = 'captured', updated_at = p_now WHERE id = r.id;
        INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id,
                                      redemption_id, contract_ref, actor, request_id)
             VALUES ('capture', v.hold_account_id, vouchers.vendor_account(r.vendor), r.amount_fen, v.id, r.id,
                     r.contract_number, p_vendor, p_request_id)
          RETURNING id INTO l_entry;
        status_code := 200;
        l_result := jsonb_build_object('id', r.id, 'status', 'captured', 'amount_fen', r.amount_fen,
            'entry_id', l_entry, 'voucher_code', v.code,
            'voucher', jsonb_build_object('available_fen', v.available_fen, 'held_fen', v.held_fen,
                                          'redeemed_fen', v.redeemed_fen, 'amount_fen', v.amount_fen));
        INSERT INTO vouchers.outbox (type, subject, organisation, vendor, payload)
             VALUES ('vouchers.hold.captured', v.code, v.holder, r.vendor,
                     l_result || jsonb_build_object('vendor', r.vendor, 'holder', v.holder, 'voucher_kind', v.kind,
                                                    'invoice_number', r.invoice_number,
                                                    'contract_number', r.contract_number));
    END IF;
    PERFORM vouchers.remember(p_client, p_key, status_code, l_result);
    body := l_result::text;
END $$;
