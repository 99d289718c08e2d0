"""the service's login may move only the columns the ledger moves; a voucher's amount is its issue entry's (issue #12, findings 2 and 4)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 17:30:00

`vouchers_writer` (the group of the service's login, `vouchers_app`: shared/dbroles.py) could
UPDATE every column of `vouchers.vouchers`, `amount_fen` included: raising it let a vendor be
paid more than was issued while verification stayed green. Table-wide UPDATE is replaced by
UPDATE on the columns the hot path (migrations/vouchers/functions/) and the service
(void, expiry, settlement, budgets, projections) really move; `accounts` and `alembic_version`
are not updated at all.

A voucher's balance is bounded by CHECKs the database already holds on every row
(`available + held + redeemed + returned = amount`, each ≥ 0: the balance is within
0…amount_fen); `amount_fen` must now be positive, no longer moves (column privilege), and must
equal its issue entry (budget → the voucher's account, same amount), checked at commit by a
deferred constraint trigger on INSERT only: issuance pays one indexed lookup, the redemption
path nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"

#: table → the only columns the service may UPDATE (grep the SQL functions and the service
#: before adding one: every column here is one the login can rewrite)
UPDATABLE = {
    "vouchers": ("available_fen", "held_fen", "redeemed_fen", "returned_fen", "voided_at", "expired_at"),
    "allowances": ("used_fen", "limit_fen"),
    "redemptions": ("status", "updated_at", "settlement_batch_id"),
    "idempotency": ("status_code", "response"),
    "settlement_batches": ("status", "closed_by", "closed_at", "entry_id"),
    "projection_cursor": ("txid", "entry_id", "entries", "projected_at"),
}
WAS_TABLE_WIDE = (*UPDATABLE, "accounts")

ISSUED_AS_ENTRY = """
CREATE FUNCTION vouchers.voucher_matches_issue_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vouchers.entries
                    WHERE voucher_id = NEW.id AND kind = 'issue' AND amount_fen = NEW.amount_fen
                      AND from_account_id = NEW.budget_account_id AND to_account_id = NEW.account_id) THEN
        RAISE EXCEPTION 'voucher % has no issue entry of % fen into its account', NEW.code, NEW.amount_fen
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    for table in WAS_TABLE_WIDE:
        op.execute(f"REVOKE UPDATE ON vouchers.{table} FROM {GROUP}")
    for table, columns in UPDATABLE.items():
        op.execute(f"GRANT UPDATE ({', '.join(columns)}) ON vouchers.{table} TO {GROUP}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON vouchers.alembic_version FROM {GROUP}")
    op.execute("ALTER TABLE vouchers.vouchers ADD CONSTRAINT ck_vouchers_amount_positive CHECK (amount_fen > 0)")
    op.execute(ISSUED_AS_ENTRY)
    op.execute(
        "CREATE CONSTRAINT TRIGGER voucher_matches_issue_entry AFTER INSERT ON vouchers.vouchers "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION vouchers.voucher_matches_issue_entry()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER voucher_matches_issue_entry ON vouchers.vouchers")
    op.execute("DROP FUNCTION vouchers.voucher_matches_issue_entry()")
    op.execute("ALTER TABLE vouchers.vouchers DROP CONSTRAINT ck_vouchers_amount_positive")
    for table, columns in UPDATABLE.items():
        op.execute(f"REVOKE UPDATE ({', '.join(columns)}) ON vouchers.{table} FROM {GROUP}")
    for table in WAS_TABLE_WIDE:
        op.execute(f"GRANT UPDATE ON vouchers.{table} TO {GROUP}")
    op.execute(f"GRANT INSERT ON vouchers.alembic_version TO {GROUP}")
