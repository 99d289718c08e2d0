-- vouchers.ledger_batch(): group commit for the redemption path (issue #16). Concurrent redemptions, holds,
-- captures and releases that one vouchers process gathered while its ledger calls were busy go to PostgreSQL as
-- one call and one transaction: the i-th element of every array is one vendor call, answered by the very function
-- its own call would run (vouchers.redeem() for `redeem`, vouchers.finish_hold() for `finish`), in array order,
-- or, when every call is a plain M3 redemption sure to be answered 201, by vouchers.ledger_captures() (below).
-- Each call keeps its own Idempotency-Key claim and stored answer, its own conditional UPDATEs and entry; a refusal
-- is an answer like any other and changes nothing, so it never affects another call. One commit (one WAL flush)
-- for the whole batch; an error that is not a refusal (a lost connection) rolls the whole batch back, and the
-- caller answers each call on its own (services/vouchers/redemptions/group_commit.py).
--
-- Lock order. A single capture or release locks its hold's row, then its voucher's, then its M3 redemption
-- ceiling's; a redemption its voucher's, then the ceiling's; a void the voucher's open holds, then the voucher. A
-- batch changes many of each, so it first locks every hold its captures and releases finish, in id order, then
-- every voucher row its calls will change, in code order, then every ceiling row, in (holder, year) order: every
-- transaction takes these rows holds first, then vouchers, then ceilings, each kind in one order, and no two (two
-- batches, or a batch and a single call or a void) can wait for each other in a circle over these rows. Before any
-- row, the batch takes the advisory lock of every call's Idempotency-Key, in the locks' order (version 4), as a
-- single call takes its key's before its rows (vouchers.claim_key()): a vendor's retry of a call that sits in
-- another process's batch waits for that batch, then replays its answer. (Until version 3 a batch claimed its keys
-- after its rows: such a retry and the batch deadlocked, PostgreSQL broke it after deadlock_timeout and the batch
-- was answered call by call.) A deferred call's key stays locked until the batch commits: its retry waits for that.
--
-- Calls that wait for another process (version 2, `p_defer`). Batches of one process never wait for each other
-- (its lanes: group_commit.py), but two processes' batches often share an enterprise, and one would wait for
-- the other's commit to be flushed. With `p_defer` the batch takes the rows it will change with SKIP LOCKED
-- instead: a call whose hold, voucher or ceiling row exists and is held by another transaction is not run and
-- is answered `status_code` 0, NULL body (deferred: nothing of it was written, not even its key's claim); the
-- caller sends it again in its next batch, without `p_defer` (then it waits, as before). Skipping never waits,
-- so it adds no lock cycle. A batch's vouchers are found by their ids (code, or the hold's voucher) through
-- indexes, not by a scan of every voucher.
--
-- A batch of plain M3 redemptions (no call deferred, every call sure to be answered 201) is written set by set
-- (version 3): vouchers.ledger_captures(), one statement per table instead of about nine per call.
--
-- It runs with enable_seqscan off (version 5): its statements reach rows by key only, and PL/pgSQL keeps each
-- statement's plan for the session. A plan made while a table was small (a fresh database) scanned the table
-- whole, and went on doing so as the table grew: a benchmark's batch check read all of vouchers.idempotency.
--
-- Its statements are planned once per connection, for any values (version 6, `plan_cache_mode`): PL/pgSQL plans a
-- statement with parameters for its values for its first five runs, then keeps doing so while the plan for any
-- values looks dearer, and the search for the batch's M3 ceilings (its arrays) was planned again on every call
-- (0.28 ms of PostgreSQL's CPU per batch, more than running it).
--
-- A batch with no capture or release and no p_defer (every batch written set by set) finds and locks its M3
-- ceilings with one statement, without the holds' part (version 7): every statement a batch runs costs PostgreSQL
-- its executor's start-up whatever the batch's size, and two vouchers processes on two cores send smaller batches
-- than one (issue #16).
--
-- version: 7
-- Versions: 1 migration 0018; 2 migration 0021 (p_defer, vouchers by index); 3 migration 0022 (ledger_captures);
-- 4 migration 0023 (the keys' advisory locks first); 5 migration 0024 (enable_seqscan off); 6 migration 0026
-- (plan_cache_mode force_generic_plan); 7 migration 0027 (a batch of redemptions finds and locks its ceilings at once).

CREATE OR REPLACE FUNCTION vouchers.ledger_batch(
    p_op text[], p_client text[], p_key text[], p_hash text[],
    p_code text[], p_amount bigint[], p_invoice text[], p_contract text[], p_hold_seconds int[],
    p_redemption_id bigint[], p_action text[],
    p_now timestamptz[], p_today date[], p_request_id text[], p_defer boolean)
RETURNS TABLE (ord int, status_code int, body text)
LANGUAGE plpgsql SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    l_answer record;
    l_holds bigint[] := '{}';
    l_codes text[] := p_code;
    l_vouchers bigint[];
    l_ceilings bigint[];
    l_locked bigint[];
    l_skipped_holds bigint[] := '{}';
    l_skipped_vouchers bigint[] := '{}';
    l_skipped_ceilings bigint[] := '{}';
    l_deferred int[] := '{}';
    l_key_lock int;
BEGIN
    -- every call's Idempotency-Key first, in one order, as vouchers.claim_key() locks a single call's
    FOR l_key_lock IN SELECT DISTINCT hashtext(c || E'\n' || k) FROM unnest(p_client, p_key) AS x(c, k) ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(hashtext('vouchers.idempotency'), l_key_lock);
    END LOOP;
    -- what the calls will change, each kind locked in its order (with p_defer: skipping rows another transaction
    -- holds, and a call that needs one is deferred): the holds they finish; their vouchers (a capture's or
    -- release's, through its hold); the M3 redemption ceilings of the years they count in (a redemption's: the
    -- day's; a capture's or release's: the hold's). Each row is found through a unique index.
    IF array_remove(p_redemption_id, NULL) <> '{}' THEN
        l_holds := ARRAY(SELECT r.id FROM vouchers.redemptions r WHERE r.id = ANY (p_redemption_id) ORDER BY r.id);
        IF p_defer THEN
            l_locked := ARRAY(SELECT r.id FROM vouchers.redemptions r WHERE r.id = ANY (l_holds)
                               ORDER BY r.id FOR UPDATE SKIP LOCKED);
            l_skipped_holds := ARRAY(SELECT unnest(l_holds) EXCEPT SELECT unnest(l_locked));
        ELSE
            PERFORM 1 FROM vouchers.redemptions r WHERE r.id = ANY (l_holds) ORDER BY r.id FOR UPDATE;
        END IF;
        l_codes := l_codes || ARRAY(SELECT v.code FROM vouchers.redemptions r JOIN vouchers.vouchers v
                                                    ON v.id = r.voucher_id WHERE r.id = ANY (l_holds));
    END IF;
    IF p_defer THEN
        l_vouchers := ARRAY(SELECT v.id FROM vouchers.vouchers v WHERE v.code = ANY (l_codes)
                             ORDER BY v.code FOR NO KEY UPDATE SKIP LOCKED);
        l_skipped_vouchers := ARRAY(SELECT v.id FROM vouchers.vouchers v
                                     WHERE v.code = ANY (l_codes) AND v.id <> ALL (l_vouchers));
    ELSE
        PERFORM 1 FROM vouchers.vouchers v WHERE v.code = ANY (l_codes) ORDER BY v.code FOR NO KEY UPDATE;
    END IF;
    IF p_defer OR cardinality(l_holds) > 0 THEN
        l_ceilings := ARRAY(
            SELECT a.id FROM vouchers.allowances a
             WHERE a.kind = 'M3.redemptions'
               AND (a.holder, a.year) IN (
                    SELECT v.holder, extract(year FROM c.today)::int
                      FROM unnest(p_code, p_today) AS c(code, today) JOIN vouchers.vouchers v ON v.code = c.code
                     WHERE v.kind = 'M3'
                    UNION
                    SELECT v.holder, r.year
                      FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id
                     WHERE r.id = ANY (l_holds) AND v.kind = 'M3')
             ORDER BY a.holder, a.year);
    END IF;
    IF p_defer THEN
        l_locked := ARRAY(SELECT a.id FROM vouchers.allowances a WHERE a.id = ANY (l_ceilings)
                           ORDER BY a.holder, a.year FOR NO KEY UPDATE SKIP LOCKED);
        IF cardinality(l_locked) < cardinality(l_ceilings) THEN
            l_skipped_ceilings := ARRAY(SELECT unnest(l_ceilings) EXCEPT SELECT unnest(l_locked));
        END IF;
        IF cardinality(l_skipped_holds) + cardinality(l_skipped_vouchers) + cardinality(l_skipped_ceilings) > 0 THEN
            l_deferred := ARRAY(
                SELECT c.i
                  FROM unnest(p_op, p_code, p_redemption_id, p_today) WITH ORDINALITY AS c(op, code, rid, today, i)
                  LEFT JOIN vouchers.redemptions r ON r.id = c.rid
                  LEFT JOIN vouchers.vouchers v
                         ON v.id = coalesce(r.voucher_id, (SELECT w.id FROM vouchers.vouchers w WHERE w.code = c.code))
                  LEFT JOIN vouchers.allowances a
                         ON v.kind = 'M3' AND a.kind = 'M3.redemptions' AND a.holder = v.holder
                        AND a.year = CASE WHEN c.op = 'finish' THEN r.year ELSE extract(year FROM c.today)::int END
                 WHERE r.id = ANY (l_skipped_holds) OR v.id = ANY (l_skipped_vouchers)
                    OR a.id = ANY (l_skipped_ceilings));
        END IF;
    ELSIF cardinality(l_holds) = 0 THEN  -- redemptions only (every set-by-set batch): found and locked at once
        PERFORM 1 FROM vouchers.allowances a
         WHERE a.kind = 'M3.redemptions'
           AND (a.holder, a.year) IN (
                SELECT v.holder, extract(year FROM c.today)::int
                  FROM unnest(p_code, p_today) AS c(code, today) JOIN vouchers.vouchers v ON v.code = c.code
                 WHERE v.kind = 'M3')
         ORDER BY a.holder, a.year FOR NO KEY UPDATE;
    ELSE
        PERFORM 1 FROM vouchers.allowances a WHERE a.id = ANY (l_ceilings) ORDER BY a.holder, a.year FOR NO KEY UPDATE;
    END IF;
    IF cardinality(l_deferred) = 0 THEN  -- plain redemptions only: written set by set, or nothing done here
        RETURN QUERY SELECT * FROM vouchers.ledger_captures(
            p_op, p_client, p_key, p_hash, p_code, p_amount, p_invoice, p_contract, p_hold_seconds, p_today,
            p_request_id);
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_op, 1), 0) LOOP
        ord := i;
        IF i = ANY (l_deferred) THEN
            status_code := 0;
            body := NULL;
        ELSIF p_op[i] = 'finish' THEN
            SELECT * INTO l_answer FROM vouchers.finish_hold(
                p_client[i], p_key[i], p_hash[i], p_redemption_id[i], p_client[i], p_action[i], p_now[i],
                p_request_id[i]);
            status_code := l_answer.status_code;
            body := l_answer.body;
        ELSE
            SELECT * INTO l_answer FROM vouchers.redeem(
                p_client[i], p_key[i], p_hash[i], p_code[i], p_client[i], p_amount[i], p_invoice[i], p_contract[i],
                p_hold_seconds[i], p_now[i], p_today[i], p_request_id[i]);
            status_code := l_answer.status_code;
            body := l_answer.body;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;
