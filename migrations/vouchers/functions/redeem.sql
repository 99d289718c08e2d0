-- vouchers.redeem(): the redemption path as one SQL function: one round trip, one transaction per call
-- (services/vouchers/hotpath.py). An idempotent, conditional move of money from a voucher to a vendor (capture) or
-- to the voucher's hold account (hold). The ceilings are single rows changed by conditional UPDATEs (atomic under
-- READ COMMITTED, no SELECT … FOR UPDATE), and the (client, key) row is claimed first (claim_key); refusals are
-- stored too (remember). The event goes into vouchers.outbox in the same transaction: its payload is the answer
-- the vendor gets, plus the holder (the object filter of applicants' webhooks). A voucher that names no vendor (M1)
-- is spent only by a vendor its holder authorised: one probe of the unique index on live authorisations inside the
-- same conditional UPDATE (an M3 voucher never evaluates it); an unauthorised vendor is refused
-- `vendor_not_authorised` (403) and nothing changes.
--
-- No subtransaction (version 4): an M3 redemption beyond its holder's annual ceiling is refused after its
-- voucher's row was changed, and that change is undone by the opposite UPDATE of the same row, which this
-- transaction holds locked. Version 3 wrapped both UPDATEs in a BEGIN … EXCEPTION block instead: a
-- subtransaction per call, whose own transaction id is what concurrent writers wait on, and past 64 of them in
-- one transaction (a batch: ledger_batch.sql) every snapshot on the server must look up pg_subtrans.
--
-- It runs with enable_seqscan off (version 5): its statements reach rows by key only, and PL/pgSQL keeps each
-- statement's plan for the session. A plan made while a table was small (a fresh database) scanned the table
-- whole, and went on doing so as the table grew: a benchmark's batch check read all of vouchers.idempotency.
--
-- version: 5
-- Versions: 1 migration 0002; 2 migration 0007 (its event); 3 migration 0014 (M1: the holder's authorisations);
-- 4 migration 0020 (no subtransaction); 5 migration 0024 (enable_seqscan off).
-- Migrations load a version by number (shared.migrations.sql_functions): this file is the current one;
-- an older one is this file with history/redeem.<n>.diff applied, down from the current version.

CREATE OR REPLACE FUNCTION vouchers.redeem(
    p_client text, p_key text, p_hash text,
    p_code text, p_vendor text, p_amount bigint, p_invoice text, p_contract text,
    p_hold_seconds int, p_now timestamptz, p_today date, p_request_id text,
    OUT status_code int, OUT body text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
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

    UPDATE vouchers.vouchers AS vv
       SET available_fen = available_fen - p_amount,
           held_fen = held_fen + CASE WHEN l_holding THEN p_amount ELSE 0 END,
           redeemed_fen = redeemed_fen + CASE WHEN l_holding THEN 0 ELSE p_amount END
     WHERE vv.code = p_code
       AND vv.available_fen >= p_amount
       AND vv.voided_at IS NULL AND vv.expired_at IS NULL AND vv.valid_until >= p_today
       -- a voucher that names its vendor (M3): that vendor; one that names none (M1): a vendor
       -- its holder authorised (one probe of a unique index; never evaluated for M3)
       AND (vv.vendor = p_vendor
            OR (vv.vendor IS NULL AND EXISTS (
                SELECT 1 FROM vouchers.vendor_authorisations a
                 WHERE a.voucher_id = vv.id AND a.vendor = p_vendor AND a.revoked_at IS NULL)))
    RETURNING vv.* INTO v;

    IF NOT FOUND THEN
        SELECT * INTO v FROM vouchers.vouchers WHERE code = p_code;
        IF NOT FOUND THEN
            status_code := 404;
            l_result := jsonb_build_object('code', 'voucher_not_found', 'params', jsonb_build_object('code', p_code));
        ELSIF v.vendor IS NOT NULL AND v.vendor <> p_vendor THEN
            status_code := 403;
            l_result := jsonb_build_object('code', 'vendor_not_allowed', 'params', jsonb_build_object('code', p_code));
        ELSIF v.vendor IS NULL AND NOT EXISTS (
                SELECT 1 FROM vouchers.vendor_authorisations a
                 WHERE a.voucher_id = v.id AND a.vendor = p_vendor AND a.revoked_at IS NULL) THEN
            status_code := 403;
            l_result := jsonb_build_object('code', 'vendor_not_authorised',
                'params', jsonb_build_object('code', p_code, 'vendor', p_vendor));
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
                -- beyond the ceiling: the voucher's change above undone (this transaction holds its row) and
                -- nothing else written; say how much headroom remains
                UPDATE vouchers.vouchers
                   SET available_fen = available_fen + p_amount,
                       held_fen = held_fen - CASE WHEN l_holding THEN p_amount ELSE 0 END,
                       redeemed_fen = redeemed_fen - CASE WHEN l_holding THEN 0 ELSE p_amount END
                 WHERE id = v.id;
                SELECT limit_fen, used_fen INTO l_allowance FROM vouchers.allowances
                 WHERE holder = v.holder AND year = l_year AND kind = 'M3.redemptions';
                status_code := 409;
                l_result := jsonb_build_object('code', 'redemption_ceiling', 'params', jsonb_build_object(
                    'year', l_year, 'limit_fen', coalesce(l_allowance.limit_fen, 0),
                    'headroom_fen', coalesce(l_allowance.limit_fen - l_allowance.used_fen, 0),
                    'requested_fen', p_amount));
                PERFORM vouchers.remember(p_client, p_key, status_code, l_result);
                body := l_result::text;
                RETURN;
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
    PERFORM vouchers.remember(p_client, p_key, status_code, l_result);
    body := l_result::text;
END $$;
