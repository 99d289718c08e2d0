"""approval reserves the programme budget (clause A2): a reservation per approval attempt

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 09:00:00

An approval in the eligibility service reserves the decision's amount from the budget row of
its measure and year (the `allowances` row of 0009) before the approval commits; issuing the
voucher or disbursing the grant consumes the reservation instead of taking again; a failed or
abandoned approval releases it. The budget row then counts committed + reserved, so the bureau
cannot approve more than the year's budget.

Each approval attempt reserves under its own id (the eligibility service records the id with
the approval), and a decision has at most one live reservation (reserved or consumed: a partial
unique index), so a failed attempt releases only what it reserved itself. States move one way
(reserved → consumed | released), enforced by a trigger; rows are never deleted. The service
role may insert rows and update only the state columns.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_ROLE = "vouchers_writer"

TABLE = """
CREATE TABLE vouchers.budget_reservations (
    id uuid PRIMARY KEY,
    decision_id uuid NOT NULL,
    measure text NOT NULL,
    year integer NOT NULL,
    amount_fen bigint NOT NULL CHECK (amount_fen > 0),
    state text NOT NULL CHECK (state IN ('reserved', 'consumed', 'released')),
    reserved_by text NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now(),
    request_id text,
    settled_at timestamptz,
    settled_by text,
    settled_reason text,
    confirmed_at timestamptz,
    CHECK ((state = 'reserved') = (settled_at IS NULL))
)
"""

ONE_WAY = """
CREATE FUNCTION vouchers.budget_reservation_one_way() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'budget reservations are never deleted (A2)' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.id <> OLD.id OR NEW.decision_id <> OLD.decision_id OR NEW.measure <> OLD.measure OR NEW.year <> OLD.year
       OR NEW.amount_fen <> OLD.amount_fen OR NEW.reserved_by <> OLD.reserved_by
       OR NEW.reserved_at <> OLD.reserved_at THEN
        RAISE EXCEPTION 'a budget reservation''s decision, measure, year and amount never change (A2)'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT (OLD.state = 'reserved' AND NEW.state IN ('reserved', 'consumed', 'released')) THEN
        RAISE EXCEPTION 'budget reservation % cannot go from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(
        "CREATE INDEX ix_budget_reservations_open ON vouchers.budget_reservations (reserved_at) "
        "WHERE state = 'reserved'"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_budget_reservations_live_decision ON vouchers.budget_reservations (decision_id) "
        "WHERE state IN ('reserved', 'consumed')"
    )
    op.execute("CREATE INDEX ix_budget_reservations_year ON vouchers.budget_reservations (measure, year, state)")
    op.execute(ONE_WAY)
    op.execute(
        "CREATE TRIGGER budget_reservation_one_way BEFORE UPDATE OR DELETE ON vouchers.budget_reservations "
        "FOR EACH ROW EXECUTE FUNCTION vouchers.budget_reservation_one_way()"
    )
    op.execute(
        "COMMENT ON TABLE vouchers.budget_reservations IS "
        "'A2: budget reserved by an approval, consumed by issuance or grant, released if the approval fails'"
    )
    op.execute(f"GRANT SELECT, INSERT ON vouchers.budget_reservations TO {SERVICE_ROLE}")
    op.execute(
        "GRANT UPDATE (state, settled_at, settled_by, settled_reason, confirmed_at) "
        f"ON vouchers.budget_reservations TO {SERVICE_ROLE}"
    )


def downgrade() -> None:
    op.execute("DROP TABLE vouchers.budget_reservations")
    op.execute("DROP FUNCTION vouchers.budget_reservation_one_way()")
