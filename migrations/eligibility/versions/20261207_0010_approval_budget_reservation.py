"""approvals record the programme budget they reserved (clause A2)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 09:00:00

An approval (and an A1 decision) reserves its amount from the programme budget in the vouchers
service before it commits, under an id of its own; the approval row records that id, and the
approved decision hands it to issuance, which consumes the reservation. Approvals from before
this migration have none: their issuance takes from the budget as before. A nullable column
without a default: no table rewrite.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE eligibility.reviews ADD COLUMN budget_reservation_id uuid")
    op.execute(
        "COMMENT ON COLUMN eligibility.reviews.budget_reservation_id IS "
        "'A2: the budget reservation (vouchers service) this approval made; null before reservations'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE eligibility.reviews DROP COLUMN budget_reservation_id")
