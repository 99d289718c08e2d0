-- vouchers.claim_key(client, key, hash): the (client, key) row is inserted first, so a concurrent retry with the
-- same key waits for the first and then answers with its stored response (`fresh` false), or 409
-- `idempotency_key_reused` when the same key came with another request.
--
-- The key's transaction-level advisory lock comes first (version 2: in the space hashtext('vouchers.idempotency'), by hashtext(client, newline, key)), before the row: a batch
-- (vouchers.ledger_batch()) takes all its keys' locks before any row it changes, and a single call takes its key's
-- here, before its rows too, so no transaction waits for a key while holding a row another one needs first (a
-- vendor's retry of a call that sits in another process's batch waits for the batch instead of deadlocking).
--
-- version: 2
-- Versions: 1 migration 0002; 2 migration 0023 (the key's advisory lock first).

CREATE OR REPLACE FUNCTION vouchers.claim_key(p_client text, p_key text, p_hash text,
                                  OUT fresh boolean, OUT status_code int, OUT body text)
LANGUAGE plpgsql AS $$
DECLARE
    stored vouchers.idempotency%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('vouchers.idempotency'), hashtext(p_client || E'\n' || p_key));
    INSERT INTO vouchers.idempotency (client, key, request_hash) VALUES (p_client, p_key, p_hash)
        ON CONFLICT (client, key) DO NOTHING;
    IF FOUND THEN
        fresh := true;
        RETURN;
    END IF;
    fresh := false;
    SELECT * INTO stored FROM vouchers.idempotency WHERE client = p_client AND key = p_key;
    IF stored.request_hash <> p_hash THEN
        status_code := 409;
        body := jsonb_build_object('code', 'idempotency_key_reused', 'params', jsonb_build_object('key', p_key))::text;
    ELSE
        status_code := stored.status_code;
        body := stored.response::text;
    END IF;
END $$;
