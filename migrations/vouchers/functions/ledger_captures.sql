-- vouchers.ledger_captures(): a batch of plain M3 redemptions written set by set (issue #16). Called by
-- vouchers.ledger_batch() once it holds the batch's rows; when every call of the batch is a redemption (no hold) of
-- an M3 voucher by the vendor it names, with a fresh Idempotency-Key, within its voucher's balance and its
-- holder's annual ceiling counted in the batch's order (running sums), each call is sure to be answered 201 by
-- vouchers.redeem(). Then the batch's writes are one statement per table instead of about nine statements per
-- call: the same rows, ids in the calls' order, the same answers, events and stored replies as the calls one by
-- one (tests/vouchers/test_group_commit.py compares them). Otherwise it returns no row and changes nothing, and
-- ledger_batch() answers each call with vouchers.redeem() as before.
--
-- Ids follow the calls: the batch draws its redemptions' and entries' ids from their identity sequences first,
-- one of each per call, and gives the k-th smallest of each to the k-th call (version 3; until then each INSERT
-- took its ids as it went and the ids returned were matched back to the calls by rank: two window functions,
-- sorts and joins per batch). A key claimed meanwhile by another transaction (the check ran before the INSERT
-- waited for it) raises: the whole transaction is rolled back, and the process answers each call alone
-- (group_commit.py).
--
-- Version 3 also made a batch's fixed cost smaller (issue #16: about half of PostgreSQL's work for a batch of one
-- call did not depend on its size, and two vouchers processes on two cores send smaller batches). The check needs
-- no running sums: amounts are positive, so when a voucher's (or a ceiling's) total in the batch fits, every
-- running sum fits. A vendor's receivable account is joined, not made: a batch whose vendor has none yet (its
-- first redemption ever) is not plain and goes call by call, where vouchers.redeem() makes it. One statement
-- writes every table, with no joins between what it wrote. The entries' and events' transaction ids (their
-- columns' defaults, a SQL function each) are read once for the batch instead of once per row.
--
-- It runs with enable_seqscan off (version 2): its statements reach rows by key only, and PL/pgSQL keeps each
-- statement's plan for the session. A plan made while a table was small (a fresh database) scanned the table
-- whole, and went on doing so as the table grew: a benchmark's batch check read all of vouchers.idempotency.
--
-- version: 3
-- Versions: 1 migration 0022; 2 migration 0024 (enable_seqscan off); 3 migration 0027 (ids drawn first, no
-- running sums in the check, the receivable account joined).

CREATE OR REPLACE FUNCTION vouchers.ledger_captures(
    p_op text[], p_client text[], p_key text[], p_hash text[],
    p_code text[], p_amount bigint[], p_invoice text[], p_contract text[], p_hold_seconds int[],
    p_today date[], p_request_id text[])
RETURNS TABLE (ord int, status_code int, body text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    l_calls int := coalesce(array_length(p_op, 1), 0);
    l_plain boolean;
    l_redemption_ids bigint[];
    l_entry_ids bigint[];
    l_ledger_txid bigint;
    l_feed_txid xid8;
    l_claimed bigint;
    l_spent bigint;
    l_vouchers bigint;
    l_counted bigint;
    l_ceilings bigint;
    l_ords int[];
    l_bodies text[];
BEGIN
    WITH c AS (
        SELECT c.op = 'redeem' AND c.hold IS NULL AND c.amount > 0
               AND v.kind = 'M3' AND v.vendor = c.client
               AND v.voided_at IS NULL AND v.expired_at IS NULL AND v.valid_until >= c.today
               AND a.id IS NOT NULL AND ra.id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM vouchers.idempotency k WHERE k.client = c.client AND k.key = c.key)
               AS plain,
               c.client, c.key, c.amount, v.id AS voucher_id, v.available_fen, a.id AS ceiling_id,
               a.limit_fen - a.used_fen AS room
          FROM unnest(p_op, p_client, p_key, p_code, p_amount, p_hold_seconds, p_today)
               AS c(op, client, key, code, amount, hold, today)
          LEFT JOIN vouchers.vouchers v ON v.code = c.code
          LEFT JOIN vouchers.allowances a
                 ON a.kind = 'M3.redemptions' AND a.holder = v.holder AND a.year = extract(year FROM c.today)::int
          LEFT JOIN vouchers.accounts ra ON ra.kind = 'vendor_receivable' AND ra.ref = c.client
    )
    SELECT (SELECT count(*) = l_calls AND coalesce(bool_and(coalesce(plain, false)), false)
                   AND count(DISTINCT (client, key)) = l_calls FROM c)
           AND NOT EXISTS (SELECT 1 FROM c GROUP BY voucher_id HAVING sum(amount) > min(available_fen))
           AND NOT EXISTS (SELECT 1 FROM c GROUP BY ceiling_id HAVING sum(amount) > min(room))
      INTO l_plain;
    IF NOT coalesce(l_plain, false) THEN
        RETURN;
    END IF;

    SELECT array_agg(r ORDER BY r), array_agg(e ORDER BY e) INTO l_redemption_ids, l_entry_ids
      FROM (SELECT nextval('vouchers.redemptions_id_seq'::regclass) AS r,
                   nextval('vouchers.entries_id_seq'::regclass) AS e
              FROM generate_series(1, l_calls)) AS drawn;
    l_ledger_txid := vouchers.ledger_txid();  -- the columns' defaults, once for the batch instead of once per row
    l_feed_txid := vouchers.feed_txid();

    WITH c AS (
        SELECT c.i, c.client, c.key, c.hash, c.amount, c.invoice, c.contract, c.request_id,
               c.redemption_id, c.entry_id, extract(year FROM c.today)::int AS year,
               v.id AS voucher_id, v.code, v.holder, v.kind, v.account_id, ra.id AS receivable_id,
               jsonb_build_object(
                   'id', c.redemption_id,
                   'voucher_code', v.code,
                   'vendor', c.client,
                   'amount_fen', c.amount,
                   'invoice_number', c.invoice,
                   'contract_number', c.contract,
                   'status', 'captured',
                   'hold_expires_at', NULL,
                   'entry_id', c.entry_id,
                   'voucher', jsonb_build_object('available_fen', v.available_fen - sum(c.amount) OVER w,
                                                 'held_fen', v.held_fen,
                                                 'redeemed_fen', v.redeemed_fen + sum(c.amount) OVER w,
                                                 'amount_fen', v.amount_fen))
                   AS result
          FROM unnest(p_client, p_key, p_hash, p_code, p_amount, p_invoice, p_contract, p_today, p_request_id,
                      l_redemption_ids, l_entry_ids)
               WITH ORDINALITY AS c(client, key, hash, code, amount, invoice, contract, today, request_id,
                                    redemption_id, entry_id, i)
          JOIN vouchers.vouchers v ON v.code = c.code
          JOIN vouchers.accounts ra ON ra.kind = 'vendor_receivable' AND ra.ref = c.client
        WINDOW w AS (PARTITION BY v.id ORDER BY c.i)
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
        INSERT INTO vouchers.redemptions (id, voucher_id, vendor, amount_fen, invoice_number, contract_number,
                                          status, year, hold_expires_at)
        OVERRIDING SYSTEM VALUE
        SELECT redemption_id, voucher_id, client, amount, invoice, contract, 'captured', year, NULL FROM c
    ),
    entered AS (
        INSERT INTO vouchers.entries (id, txid, kind, from_account_id, to_account_id, amount_fen, voucher_id,
                                      redemption_id, contract_ref, actor, request_id)
        OVERRIDING SYSTEM VALUE
        SELECT entry_id, l_ledger_txid, 'redeem', account_id, receivable_id, amount, voucher_id, redemption_id,
               contract, client, request_id
          FROM c ORDER BY i
    ),
    claimed AS (
        INSERT INTO vouchers.idempotency (client, key, request_hash, status_code, response)
        SELECT client, key, hash, 201, result FROM c
        ON CONFLICT (client, key) DO NOTHING
        RETURNING 1
    ),
    events AS (
        INSERT INTO vouchers.outbox (txid, type, subject, organisation, vendor, payload)
        SELECT l_feed_txid, 'vouchers.voucher.redeemed', code, holder, client,
               result || jsonb_build_object('holder', holder, 'voucher_kind', kind)
          FROM c ORDER BY i
    )
    SELECT (SELECT count(*) FROM claimed),
           (SELECT count(*) FROM spent), count(DISTINCT voucher_id),
           (SELECT count(*) FROM counted), count(DISTINCT (holder, year)),
           array_agg(i::int ORDER BY i), array_agg(result::text ORDER BY i)
      INTO l_claimed, l_spent, l_vouchers, l_counted, l_ceilings, l_ords, l_bodies
      FROM c;
    IF l_claimed <> l_calls THEN  -- a key claimed meanwhile: nothing of this transaction may stand
        RAISE EXCEPTION USING ERRCODE = 'LG002', MESSAGE = 'an Idempotency-Key of the batch was claimed meanwhile';
    END IF;
    IF l_spent <> l_vouchers OR l_counted <> l_ceilings THEN  -- a balance or a ceiling not as checked: never expected, and nothing of this transaction may stand
        RAISE EXCEPTION USING ERRCODE = 'LG003', MESSAGE = 'a voucher or ceiling changed under the batch''s lock';
    END IF;
    RETURN QUERY SELECT o.ord, 201, o.body FROM unnest(l_ords, l_bodies) AS o(ord, body);
END $$;
