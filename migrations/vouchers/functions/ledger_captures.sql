-- vouchers.ledger_captures(): a batch of plain M3 redemptions written set by set (issue #16). Called by
-- vouchers.ledger_batch() once it holds the batch's rows; when every call of the batch is a redemption (no hold) of
-- an M3 voucher by the vendor it names, with a fresh Idempotency-Key, within its voucher's balance and its
-- holder's annual ceiling counted in the batch's order (running sums), each call is sure to be answered 201 by
-- vouchers.redeem(). Then the batch's writes are one statement per table instead of about nine statements per
-- call: the same rows, ids in the calls' order, the same answers, events and stored replies as the calls one by
-- one (tests/vouchers/test_group_commit.py compares them). Otherwise it returns no row and changes nothing, and
-- ledger_batch() answers each call with vouchers.redeem() as before.
--
-- Ids follow the calls: each INSERT takes its rows ordered by call, and identity values are drawn in the order
-- the rows are inserted, so the k-th smallest id returned is the k-th call's. A key claimed meanwhile by another
-- transaction (the check ran before the INSERT waited for it) raises: the whole transaction is rolled back, and
-- the process answers each call alone (group_commit.py).
--
-- It runs with enable_seqscan off (version 2): its statements reach rows by key only, and PL/pgSQL keeps each
-- statement's plan for the session. A plan made while a table was small (a fresh database) scanned the table
-- whole, and went on doing so as the table grew: a benchmark's batch check read all of vouchers.idempotency.
--
-- version: 2
-- Versions: 1 migration 0022; 2 migration 0024 (enable_seqscan off).

CREATE OR REPLACE FUNCTION vouchers.ledger_captures(
    p_op text[], p_client text[], p_key text[], p_hash text[],
    p_code text[], p_amount bigint[], p_invoice text[], p_contract text[], p_hold_seconds int[],
    p_today date[], p_request_id text[])
RETURNS TABLE (ord int, status_code int, body text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    l_calls int := coalesce(array_length(p_op, 1), 0);
    l_plain boolean;
    l_claimed bigint;
    l_spent bigint;
    l_vouchers bigint;
    l_counted bigint;
    l_ceilings bigint;
    l_ords int[];
    l_bodies text[];
BEGIN
    SELECT count(*) = l_calls AND coalesce(bool_and(coalesce(x.plain, false)), false) INTO l_plain
      FROM (SELECT c.op = 'redeem' AND c.hold IS NULL AND c.amount > 0
                   AND v.kind = 'M3' AND v.vendor = c.client
                   AND v.voided_at IS NULL AND v.expired_at IS NULL AND v.valid_until >= c.today
                   AND sum(c.amount) OVER (PARTITION BY v.id ORDER BY c.i) <= v.available_fen
                   AND a.used_fen + sum(c.amount) OVER (PARTITION BY a.id ORDER BY c.i) <= a.limit_fen
                   AND count(*) OVER (PARTITION BY c.client, c.key) = 1
                   AND NOT EXISTS (SELECT 1 FROM vouchers.idempotency k WHERE k.client = c.client AND k.key = c.key)
                   AS plain
              FROM unnest(p_op, p_client, p_key, p_code, p_amount, p_hold_seconds, p_today)
                   WITH ORDINALITY AS c(op, client, key, code, amount, hold, today, i)
              LEFT JOIN vouchers.vouchers v ON v.code = c.code
              LEFT JOIN vouchers.allowances a
                     ON a.kind = 'M3.redemptions' AND a.holder = v.holder
                    AND a.year = extract(year FROM c.today)::int) AS x;
    IF NOT l_plain THEN
        RETURN;
    END IF;

    WITH c AS (
        SELECT c.i, row_number() OVER (ORDER BY c.i) AS k, c.client, c.key, c.hash, c.amount, c.invoice,
               c.contract, c.request_id, extract(year FROM c.today)::int AS year,
               v.id AS voucher_id, v.code, v.holder, v.kind, v.account_id, v.amount_fen AS voucher_fen, v.held_fen,
               v.available_fen - sum(c.amount) OVER w AS available_after,
               v.redeemed_fen + sum(c.amount) OVER w AS redeemed_after
          FROM unnest(p_client, p_key, p_hash, p_code, p_amount, p_invoice, p_contract, p_today, p_request_id)
               WITH ORDINALITY AS c(client, key, hash, code, amount, invoice, contract, today, request_id, i)
          JOIN vouchers.vouchers v ON v.code = c.code
        WINDOW w AS (PARTITION BY v.id ORDER BY c.i)
    ),
    receivable AS (  -- a vendor's account made if missing, in the order of the vendors' first calls (as one by one)
        SELECT d.client, vouchers.vendor_account(d.client) AS account_id
          FROM (SELECT client, min(i) AS first FROM c GROUP BY client) d
         ORDER BY d.first
    ),
    spent AS (
        UPDATE vouchers.vouchers vv
           SET available_fen = vv.available_fen - s.total, redeemed_fen = vv.redeemed_fen + s.total
          FROM (SELECT voucher_id, sum(amount) AS total FROM c GROUP BY voucher_id) s
         WHERE vv.id = s.voucher_id AND vv.available_fen >= s.total  -- checked above; kept as a guard
        RETURNING 1
    ),
    counted AS (
        UPDATE vouchers.allowances a SET used_fen = a.used_fen + s.total
          FROM (SELECT holder, year, sum(amount) AS total FROM c GROUP BY holder, year) s
         WHERE a.kind = 'M3.redemptions' AND a.holder = s.holder AND a.year = s.year
           AND a.used_fen + s.total <= a.limit_fen  -- checked above; kept as a guard
        RETURNING 1
    ),
    redeemed AS (
        INSERT INTO vouchers.redemptions (voucher_id, vendor, amount_fen, invoice_number, contract_number,
                                          status, year, hold_expires_at)
        SELECT voucher_id, client, amount, invoice, contract, 'captured', year, NULL FROM c ORDER BY i
        RETURNING id
    ),
    r AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM redeemed),
    entered AS (
        INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id,
                                      redemption_id, contract_ref, actor, request_id)
        SELECT 'redeem', c.account_id, receivable.account_id, c.amount, c.voucher_id, r.id, c.contract, c.client,
               c.request_id
          FROM c JOIN r ON r.k = c.k JOIN receivable ON receivable.client = c.client
         ORDER BY c.i
        RETURNING id
    ),
    e AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM entered),
    answers AS (
        SELECT c.i, c.client, c.key, c.hash, c.code, c.holder, c.kind, jsonb_build_object(
                   'id', r.id,
                   'voucher_code', c.code,
                   'vendor', c.client,
                   'amount_fen', c.amount,
                   'invoice_number', c.invoice,
                   'contract_number', c.contract,
                   'status', 'captured',
                   'hold_expires_at', NULL,
                   'entry_id', e.id,
                   'voucher', jsonb_build_object('available_fen', c.available_after, 'held_fen', c.held_fen,
                                                 'redeemed_fen', c.redeemed_after, 'amount_fen', c.voucher_fen))
                   AS result
          FROM c JOIN r ON r.k = c.k JOIN e ON e.k = c.k
    ),
    claimed AS (
        INSERT INTO vouchers.idempotency (client, key, request_hash, status_code, response)
        SELECT client, key, hash, 201, result FROM answers ORDER BY i
        ON CONFLICT (client, key) DO NOTHING
        RETURNING 1
    ),
    events AS (
        INSERT INTO vouchers.outbox (type, subject, organisation, vendor, payload)
        SELECT 'vouchers.voucher.redeemed', code, holder, client,
               result || jsonb_build_object('holder', holder, 'voucher_kind', kind)
          FROM answers ORDER BY i
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM claimed),
           (SELECT count(*) FROM spent), (SELECT count(DISTINCT voucher_id) FROM c),
           (SELECT count(*) FROM counted), (SELECT count(DISTINCT (holder, year)) FROM c),
           array_agg(i::int ORDER BY i), array_agg(result::text ORDER BY i)
      INTO l_claimed, l_spent, l_vouchers, l_counted, l_ceilings, l_ords, l_bodies
      FROM answers;
    IF l_claimed <> l_calls THEN  -- a key claimed meanwhile: nothing of this transaction may stand
        RAISE EXCEPTION USING ERRCODE = 'LG002', MESSAGE = 'an Idempotency-Key of the batch was claimed meanwhile';
    END IF;
    IF l_spent <> l_vouchers OR l_counted <> l_ceilings THEN  -- a balance or a ceiling not as checked: never expected, and nothing of this transaction may stand
        RAISE EXCEPTION USING ERRCODE = 'LG003', MESSAGE = 'a voucher or ceiling changed under the batch''s lock';
    END IF;
    RETURN QUERY SELECT o.ord, 201, o.body FROM unnest(l_ords, l_bodies) AS o(ord, body);
END $$;
