-- vouchers.expire_holds(now): releases every hold past its expiry (release_hold, status 'expired'); how many.
--
-- version: 1
-- Versions: 1 migration 0002.

CREATE OR REPLACE FUNCTION vouchers.expire_holds(p_now timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    due bigint;
    released int := 0;
BEGIN
    FOR due IN SELECT id FROM vouchers.redemptions WHERE status = 'held' AND hold_expires_at <= p_now
               ORDER BY id FOR UPDATE SKIP LOCKED LOOP
        PERFORM vouchers.release_hold(due, 'expired', p_now, NULL);
        released := released + 1;
    END LOOP;
    RETURN released;
END $$;
