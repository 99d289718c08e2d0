-- Migration 0007: the redemption path's functions, replaced to write their events.
-- Statements are separated by lines holding only "-- ;;" (as ledger_functions.sql).
--
-- The same functions as ledger_functions.sql (migration 0002), each with one more INSERT:
-- the event into vouchers.outbox, in the same transaction as the change (shared/events.py).
-- No extra round trip: the hot path is still one function call. The payload is the answer
-- the vendor gets, plus the holder (the object filter of applicants' webhooks).

CREATE OR REPLACE FUNCTION vouchers.redeem(
    p_client text, p_key text, p_hash text,
    p_code text, p_vendor text, p_amount bigint, p_invoice text, p_contract text,
    p_hold_seconds int, p_now timestamptz, p_today date, p_request_id text,
    OUT status_code int, OUT body text)
LANGUAGE plpgsql AS $$
DECLARE
    l_claimed record;
    v vouchers.vouchers%ROWTYPE;
    l_holding boolean := p_hold_seconds IS NOT NULL;
    l_year int := extract(year FROM p_today)::int;
    l_redemption bigint;
    l_entry bigint;
    l_to bigint;
    l_result jsonb;
    l_allowance record;
BEGIN
    SELECT * INTO l_claimed FROM vouchers.claim_key(p_client, p_key, p_hash);
    IF NOT l_claimed.fresh THEN
        status_code := l_claimed.status_code;
        body := l_claimed.body;
        RETURN;
    END IF;

    BEGIN
        UPDATE vouchers.vouchers
           SET available_fen = available_fen - p_amount,
               held_fen = held_fen + CASE WHEN l_holding THEN p_amount ELSE 0 END,
               redeemed_fen = redeemed_fen + CASE WHEN l_holding THEN 0 ELSE p_amount END
         WHERE code = p_code
           AND available_fen >= p_amount
           AND voided_at IS NULL AND expired_at IS NULL AND valid_until >= p_today
           AND (vendor IS NULL OR vendor = p_vendor)
        RETURNING * INTO v;

        IF NOT FOUND THEN
            SELECT * INTO v FROM vouchers.vouchers WHERE code = p_code;
            IF NOT FOUND THEN
                status_code := 404;
                l_result := jsonb_build_object('code', 'voucher_not_found', 'params', jsonb_build_object('code', p_code));
            ELSIF v.vendor IS NOT NULL AND v.vendor <> p_vendor THEN
                status_code := 403;
                l_result := jsonb_build_object('code', 'vendor_not_allowed', 'params', jsonb_build_object('code', p_code));
            ELSIF v.voided_at IS NOT NULL THEN
                status_code := 409;
                l_result := jsonb_build_object('code', 'voucher_voided', 'params', jsonb_build_object('code', p_code));
            ELSIF v.expired_at IS NOT NULL OR v.valid_until < p_today THEN
                status_code := 409;
                l_result := jsonb_build_object('code', 'voucher_expired',
                    'params', jsonb_build_object('code', p_code, 'valid_until', v.valid_until));
            ELSE
                status_code := 409;
                l_result := jsonb_build_object('code', 'insufficient_balance',
                    'params', jsonb_build_object('code', p_code, 'available_fen', v.available_fen,
                                                 'requested_fen', p_amount));
            END IF;
        ELSE
            IF v.kind = 'M3' THEN
                -- M3: redemptions per enterprise per calendar year (held amounts count)
                UPDATE vouchers.allowances SET used_fen = used_fen + p_amount
                 WHERE holder = v.holder AND year = l_year AND kind = 'M3.redemptions'
                   AND used_fen + p_amount <= limit_fen;
                IF NOT FOUND THEN
                    RAISE EXCEPTION USING ERRCODE = 'LG001', MESSAGE = 'redemption ceiling';
                END IF;
            END IF;
            l_to := CASE WHEN l_holding THEN v.hold_account_id ELSE vouchers.vendor_account(p_vendor) END;
            INSERT INTO vouchers.redemptions (voucher_id, vendor, amount_fen, invoice_number, contract_number,
                                              status, year, hold_expires_at)
                 VALUES (v.id, p_vendor, p_amount, p_invoice, p_contract,
                         CASE WHEN l_holding THEN 'held' ELSE 'captured' END, l_year,
                         CASE WHEN l_holding THEN p_now + make_interval(secs => p_hold_seconds) END)
              RETURNING id INTO l_redemption;
            INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id,
                                          redemption_id, contract_ref, actor, request_id)
                 VALUES (CASE WHEN l_holding THEN 'hold' ELSE 'redeem' END, v.account_id, l_to, p_amount,
                         v.id, l_redemption, p_contract, p_vendor, p_request_id)
              RETURNING id INTO l_entry;
            status_code := 201;
            l_result := jsonb_build_object(
                'id', l_redemption,
                'voucher_code', v.code,
                'vendor', p_vendor,
                'amount_fen', p_amount,
                'invoice_number', p_invoice,
                'contract_number', p_contract,
                'status', CASE WHEN l_holding THEN 'held' ELSE 'captured' END,
                'hold_expires_at', CASE WHEN l_holding THEN p_now + make_interval(secs => p_hold_seconds) END,
                'entry_id', l_entry,
                'voucher', jsonb_build_object('available_fen', v.available_fen, 'held_fen', v.held_fen,
                                              'redeemed_fen', v.redeemed_fen, 'amount_fen', v.amount_fen));
            -- the event, in this transaction (shared/events.py): the answer, and whose voucher it is
            INSERT INTO vouchers.outbox (type, subject, organisation, vendor, payload)
                 VALUES (CASE WHEN l_holding THEN 'vouchers.voucher.held' ELSE 'vouchers.voucher.redeemed' END,
                         v.code, v.holder, p_vendor,
                         l_result || jsonb_build_object('holder', v.holder, 'voucher_kind', v.kind));
        END IF;
    EXCEPTION WHEN SQLSTATE 'LG001' THEN
        -- everything in this block is rolled back; say how much headroom remains
        SELECT limit_fen, used_fen INTO l_allowance FROM vouchers.allowances
         WHERE holder = v.holder AND year = l_year AND kind = 'M3.redemptions';
        status_code := 409;
        l_result := jsonb_build_object('code', 'redemption_ceiling', 'params', jsonb_build_object(
            'year', l_year, 'limit_fen', coalesce(l_allowance.limit_fen, 0),
            'headroom_fen', coalesce(l_allowance.limit_fen - l_allowance.used_fen, 0), 'requested_fen', p_amount));
    END;
    PERFORM vouchers.remember(p_client, p_key, status_code, l_result);
    body := l_result::text;
END $$;
-- ;;
CREATE OR REPLACE FUNCTION vouchers.finish_hold(
    p_client text, p_key text, p_hash text,
    p_redemption bigint, p_vendor text, p_action text, p_now timestamptz, p_request_id text,
    OUT status_code int, OUT body text)
LANGUAGE plpgsql AS $$
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
-- ;;
CREATE OR REPLACE FUNCTION vouchers.release_hold(p_redemption bigint, p_status text, p_now timestamptz, p_request_id text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r vouchers.redemptions%ROWTYPE;
    v vouchers.vouchers%ROWTYPE;
    l_entry bigint;
BEGIN
    UPDATE vouchers.redemptions SET status = p_status, updated_at = p_now
     WHERE id = p_redemption AND status = 'held' RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE vouchers.vouchers SET held_fen = held_fen - r.amount_fen, available_fen = available_fen + r.amount_fen
     WHERE id = r.voucher_id RETURNING * INTO v;
    IF v.kind = 'M3' THEN
        UPDATE vouchers.allowances SET used_fen = used_fen - r.amount_fen
         WHERE holder = v.holder AND year = r.year AND kind = 'M3.redemptions';
    END IF;
    INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, redemption_id,
                                  actor, request_id, memo)
         VALUES ('release', v.hold_account_id, v.account_id, r.amount_fen, v.id, r.id, r.vendor, p_request_id,
                 p_status)
      RETURNING id INTO l_entry;
    -- released by the vendor, or expired unused (expire_holds)
    INSERT INTO vouchers.outbox (type, subject, organisation, vendor, payload)
         VALUES ('vouchers.hold.' || p_status, v.code, v.holder, r.vendor,
                 jsonb_build_object('id', r.id, 'voucher_code', v.code, 'vendor', r.vendor, 'holder', v.holder,
                     'voucher_kind', v.kind, 'amount_fen', r.amount_fen, 'status', p_status, 'entry_id', l_entry,
                     'invoice_number', r.invoice_number, 'contract_number', r.contract_number,
                     'voucher', jsonb_build_object('available_fen', v.available_fen, 'held_fen', v.held_fen,
                                                   'redeemed_fen', v.redeemed_fen, 'amount_fen', v.amount_fen)));
END $$;
