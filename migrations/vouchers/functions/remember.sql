-- vouchers.remember(client, key, status, body): the answer a key gives from now on, refusals included (a retry can
-- never turn a refusal into a success).
--
-- version: 1
-- Versions: 1 migration 0002.

CREATE OR REPLACE FUNCTION vouchers.remember(p_client text, p_key text, p_status int, p_body jsonb) RETURNS void
LANGUAGE sql AS $$
    UPDATE vouchers.idempotency SET status_code = p_status, response = p_body
    WHERE client = p_client AND key = p_key;
$$;
