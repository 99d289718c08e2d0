-- vouchers.expire_holds(now, only, exclude): releases every hold past its expiry (release_hold, status 'expired'),
-- in id order, skipping holds another transaction has locked; how many. `only` (not NULL): only those holders'
-- holds; `exclude`: every holder's but those (sandbox mode: a test enterprise's holds end by its own clock).
--
-- version: 2
-- Versions: 1 migration 0002; 2 migration 0025 (the holder filters, which the sandbox's expiry run had in a
-- statement of its own).

CREATE OR REPLACE FUNCTION vouchers.expire_holds(p_now timestamptz, p_only text[] DEFAULT NULL,
                                                 p_exclude text[] DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    due bigint;
    released int := 0;
BEGIN
    FOR due IN SELECT r.id FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id
                WHERE r.status = 'held' AND r.hold_expires_at <= p_now
                  AND (p_only IS NULL OR v.holder = ANY(p_only))
                  AND (p_exclude IS NULL OR v.holder <> ALL(p_exclude))
                ORDER BY r.id FOR UPDATE OF r SKIP LOCKED LOOP
        PERFORM vouchers.release_hold(due, 'expired', p_now, NULL);
        released := released + 1;
    END LOOP;
    RETURN released;
END $$;
