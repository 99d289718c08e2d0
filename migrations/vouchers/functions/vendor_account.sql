-- vouchers.vendor_account(vendor): the vendor's receivable account, created on its first redemption.
--
-- version: 1
-- Versions: 1 migration 0002.

CREATE OR REPLACE FUNCTION vouchers.vendor_account(p_vendor text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    account bigint;
BEGIN
    SELECT id INTO account FROM vouchers.accounts WHERE kind = 'vendor_receivable' AND ref = p_vendor;
    IF account IS NULL THEN
        INSERT INTO vouchers.accounts (kind, ref) VALUES ('vendor_receivable', p_vendor)
            ON CONFLICT (kind, ref) DO NOTHING RETURNING id INTO account;
        IF account IS NULL THEN
            SELECT id INTO account FROM vouchers.accounts WHERE kind = 'vendor_receivable' AND ref = p_vendor;
        END IF;
    END IF;
    RETURN account;
END $$;
