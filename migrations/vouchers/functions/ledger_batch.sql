-- vouchers.ledger_batch(): group commit for the redemption path (issue #16). Concurrent redemptions, holds,
-- captures and releases that one vouchers process gathered while its ledger calls were busy go to PostgreSQL as
-- one call and one transaction: the i-th element of every array is one vendor call, answered by the very function
-- its own call would run (vouchers.redeem() for `redeem`, vouchers.finish_hold() for `finish`), in array order.
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
-- batches, or a batch and a single call or a void) can wait for each other in a circle.
--
-- version: 1
-- Versions: 1 migration 0018.

CREATE OR REPLACE FUNCTION vouchers.ledger_batch(
    p_op text[], p_client text[], p_key text[], p_hash text[],
    p_code text[], p_amount bigint[], p_invoice text[], p_contract text[], p_hold_seconds int[],
    p_redemption_id bigint[], p_action text[],
    p_now timestamptz[], p_today date[], p_request_id text[])
RETURNS TABLE (ord int, status_code int, body text)
LANGUAGE plpgsql AS $$
DECLARE
    l_answer record;
BEGIN
    -- what the calls will change: the holds they finish, their vouchers (a capture's or release's, through its hold),
    -- and the M3 redemption ceilings of the years they count in (a redemption's: the day's; a capture's or
    -- release's: the hold's)
    PERFORM 1 FROM vouchers.redemptions r WHERE r.id = ANY (p_redemption_id) ORDER BY r.id FOR UPDATE;
    PERFORM 1 FROM vouchers.vouchers v
     WHERE v.code = ANY (p_code)
        OR v.id IN (SELECT r.voucher_id FROM vouchers.redemptions r WHERE r.id = ANY (p_redemption_id))
     ORDER BY v.code FOR NO KEY UPDATE;
    PERFORM 1 FROM vouchers.allowances a
     WHERE a.kind = 'M3.redemptions'
       AND (a.holder, a.year) IN (
            SELECT v.holder, extract(year FROM c.today)::int
              FROM unnest(p_code, p_today) AS c(code, today) JOIN vouchers.vouchers v ON v.code = c.code
             WHERE v.kind = 'M3'
            UNION
            SELECT v.holder, r.year
              FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id
             WHERE r.id = ANY (p_redemption_id) AND v.kind = 'M3')
     ORDER BY a.holder, a.year FOR NO KEY UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_op, 1), 0) LOOP
        IF p_op[i] = 'finish' THEN
            SELECT * INTO l_answer FROM vouchers.finish_hold(
                p_client[i], p_key[i], p_hash[i], p_redemption_id[i], p_client[i], p_action[i], p_now[i],
                p_request_id[i]);
        ELSE
            SELECT * INTO l_answer FROM vouchers.redeem(
                p_client[i], p_key[i], p_hash[i], p_code[i], p_client[i], p_amount[i], p_invoice[i], p_contract[i],
                p_hold_seconds[i], p_now[i], p_today[i], p_request_id[i]);
        END IF;
        ord := i;
        status_code := l_answer.status_code;
        body := l_answer.body;
        RETURN NEXT;
    END LOOP;
END $$;
