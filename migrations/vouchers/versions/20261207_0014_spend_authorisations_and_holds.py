"""who may spend a voucher: the holder's authorisations; holds end with who ended them and why (issue #12, finding 7)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 18:00:00

`vouchers.vendor_authorisations`: a voucher that names no vendor (M1) is spent only by a vendor
its holder authorised (`POST /v1/vouchers/{code}/authorisations`, revocable), or one its
application named as the compute provider (authorised at issuance). Existing M1 vouchers: the
vendors that already redeemed from them (captured) are authorised here; any other vendor needs
the holder's authorisation. `vouchers.redeem()` checks it in its conditional UPDATE
(functions/redeem.sql, version 3). The service may insert authorisations and revoke them (three
columns), never delete or un-revoke one (a trigger).

`vouchers.release_hold()` gains the actor and the reason, recorded in the release entry and its
event; the four-argument form answers as before (functions/release_hold.sql, version 3). Downgrading
restores migration 0007's functions (version 2).
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"

ONE_WAY = """
CREATE FUNCTION vouchers.authorisation_one_way() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
       OR (NEW.id, NEW.voucher_id, NEW.vendor, NEW.basis, NEW.granted_by, NEW.granted_at)
          IS DISTINCT FROM (OLD.id, OLD.voucher_id, OLD.vendor, OLD.basis, OLD.granted_by, OLD.granted_at) THEN
        RAISE EXCEPTION 'an authorisation is only ever revoked, once' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE vouchers.vendor_authorisations (
            id bigserial PRIMARY KEY,
            voucher_id bigint NOT NULL REFERENCES vouchers.vouchers (id),
            vendor text NOT NULL,
            basis text NOT NULL CHECK (basis IN ('holder', 'application', 'migration')),
            granted_by text NOT NULL,
            granted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            request_id text,
            revoked_at timestamptz,
            revoked_by text,
            revoke_reason text,
            CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX ux_vendor_authorisations_live ON vouchers.vendor_authorisations (voucher_id, vendor) "
        "WHERE revoked_at IS NULL"
    )
    op.execute(ONE_WAY)
    op.execute(
        "CREATE TRIGGER authorisation_one_way BEFORE UPDATE ON vouchers.vendor_authorisations "
        "FOR EACH ROW EXECUTE FUNCTION vouchers.authorisation_one_way()"
    )
    op.execute(f"GRANT SELECT, INSERT ON vouchers.vendor_authorisations TO {GROUP}")
    op.execute(f"GRANT UPDATE (revoked_at, revoked_by, revoke_reason) ON vouchers.vendor_authorisations TO {GROUP}")
    op.execute(f"GRANT USAGE ON SEQUENCE vouchers.vendor_authorisations_id_seq TO {GROUP}")
    # existing compute vouchers: the vendors that already redeemed from them keep the right
    op.execute(
        """
        INSERT INTO vouchers.vendor_authorisations (voucher_id, vendor, basis, granted_by)
        SELECT DISTINCT r.voucher_id, r.vendor, 'migration', 'migration 0014 (redeemed before authorisations)'
        FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id
        WHERE v.vendor IS NULL AND r.status = 'captured'
        """
    )
    for name in ("release_hold", "redeem"):
        for statement in sql_functions(FUNCTIONS, name, version=3):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION vouchers.release_hold(bigint, text, timestamptz, text)")
    op.execute("DROP FUNCTION vouchers.release_hold(bigint, text, timestamptz, text, text, text)")
    for name in ("redeem", "release_hold"):
        for statement in sql_functions(FUNCTIONS, name, version=2):
            op.execute(statement)
    op.execute("DROP TABLE vouchers.vendor_authorisations")
    op.execute("DROP FUNCTION vouchers.authorisation_one_way()")
