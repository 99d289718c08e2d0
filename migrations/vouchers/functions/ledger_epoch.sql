-- The ledger's transaction ids, independent of the cluster's counter (issue #15).
--
-- Each entry records the id of the transaction that wrote it (`entries.txid`), and the sealer seals in
-- (txid, id) order up to a watermark: the oldest transaction still running. That order is what lets it seal
-- an entry only once every transaction that could still write before it has ended. PostgreSQL's transaction
-- ids belong to a cluster: restored into a fresh one, whose counter starts low, new entries got ids below the
-- last sealed one and were never sealed. So the ledger counts in its own epoch: the cluster's id plus
-- `vouchers.ledger_epoch.offset_xid` (0 until a restore), and `vouchers.bridge_epoch()` (run by the owner after
-- every migration and restore) moves the offset so that the next id is above every id the ledger holds. The
-- bridge is recorded (from which id, when), so an entry forged with an old id is still caught by verify.
--
-- version: 1
-- Versions: 1 migration 0015.

CREATE OR REPLACE FUNCTION vouchers.ledger_txid() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT pg_current_xact_id()::text::bigint + (SELECT offset_xid FROM vouchers.ledger_epoch)
$$;
-- ;;
CREATE OR REPLACE FUNCTION vouchers.ledger_watermark() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + (SELECT offset_xid FROM vouchers.ledger_epoch)
$$;
-- ;;
CREATE OR REPLACE FUNCTION vouchers.bridge_epoch() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l_offset bigint;
    l_last bigint;
    l_next bigint;
BEGIN
    -- the sealer's lock (services/vouchers/chain/repository.py SEAL_LOCK_KEY): no seal runs meanwhile
    PERFORM pg_advisory_xact_lock(5496453427142328321);
    SELECT offset_xid INTO l_offset FROM vouchers.ledger_epoch FOR UPDATE;
    SELECT max(txid) INTO l_last FROM vouchers.entries;
    l_next := pg_current_xact_id()::text::bigint + l_offset;
    IF l_last IS NULL OR l_last < l_next THEN
        RETURN 0;  -- the cluster's counter is ahead of the ledger: nothing to bridge
    END IF;
    l_offset := l_offset + (l_last - l_next) + 1;
    UPDATE vouchers.ledger_epoch SET offset_xid = l_offset, bridged_from = l_last, bridged_at = now();
    RETURN l_offset;
END $$;
