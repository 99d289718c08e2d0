-- vouchers.budget_committed(account_ref): A2, what a budget account has committed (issued + granted − voided,
-- expired, reversed), in entries of other transactions: the caller's own entries are counted by its own UPDATE
-- (services/vouchers/budget_ceilings.py). Entries' transaction ids are the ledger's (ledger_epoch.sql).
--
-- version: 2
-- Versions: 1 migration 0009; 2 migration 0015 (the ledger's transaction ids).

CREATE OR REPLACE FUNCTION vouchers.budget_committed(account_ref text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    -- what left the budget account (issue, grant) less what came back (void, expire, reversal);
    -- the calling transaction's own entries are left out (NULL when it has written nothing)
    SELECT coalesce(sum(moves.amount_fen), 0)::bigint FROM (
        SELECT e.amount_fen, e.txid
        FROM vouchers.accounts a JOIN vouchers.entries e ON e.from_account_id = a.id
        WHERE a.kind = 'budget' AND a.ref = account_ref
        UNION ALL
        SELECT -e.amount_fen, e.txid
        FROM vouchers.accounts a JOIN vouchers.entries e ON e.to_account_id = a.id
        WHERE a.kind = 'budget' AND a.ref = account_ref
    ) moves
    WHERE moves.txid IS DISTINCT FROM (
        SELECT pg_current_xact_id_if_assigned()::text::bigint + offset_xid FROM vouchers.ledger_epoch
    )
$$;
