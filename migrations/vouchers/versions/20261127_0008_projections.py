"""projections for the aggregates API; M1 revenue class and compute split on vouchers

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 16:00:00

Small tables the projector (services/vouchers/reporting/projector.py) folds committed ledger entries
into, off the redemption path, and the one-row cursor it advances in the same transaction
(so each entry is counted exactly once). They are projections, not the ledger: the service
role may update them (and rebuild them from scratch); the ledger stays append-only.

The voucher row gains what an M1 voucher's decision says about it, for reporting: the
revenue class and the split of its compute base between district, domestic and other
compute (NULL for vouchers issued before this migration: reported as "unknown").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_ROLE = "vouchers_writer"
FEN = sa.BigInteger()
TABLES = ("agg_flows", "agg_vendors", "agg_m1_classes", "agg_m1_shares", "agg_budget", "agg_holders")


def _money(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(name, FEN, nullable=False, server_default="0") for name in names]


def upgrade() -> None:
    # nullable, no default: adding them rewrites nothing and the redemption path never reads them
    op.add_column("vouchers", sa.Column("revenue_class", sa.Text(), nullable=True), schema="vouchers")
    op.add_column("vouchers", sa.Column("compute_base_fen", FEN, nullable=True), schema="vouchers")
    op.add_column("vouchers", sa.Column("compute_district_fen", FEN, nullable=True), schema="vouchers")
    op.add_column("vouchers", sa.Column("compute_domestic_fen", FEN, nullable=True), schema="vouchers")

    op.create_table(
        "projection_cursor",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("projected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_projection_cursor_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projection_cursor")),
        schema="vouchers",
    )
    op.execute("INSERT INTO vouchers.projection_cursor (id, txid, entry_id, entries) VALUES (1, -1, -1, 0)")
    # measure × Shenzhen year × month × flow: summary, monthly
    op.create_table(
        "agg_flows",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        sa.Column("month", sa.SmallInteger(), nullable=False),
        sa.Column("flow", sa.Text(), nullable=False),
        *_money("amount_fen", "entries"),
        sa.PrimaryKeyConstraint("year", "measure", "month", "flow", name=op.f("pk_agg_flows")),
        schema="vouchers",
    )
    # year × measure × vendor: the vendor ranking
    op.create_table(
        "agg_vendors",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        sa.Column("vendor", sa.Text(), nullable=False),
        *_money("redeemed_fen", "settled_fen", "redemptions"),
        sa.PrimaryKeyConstraint("year", "measure", "vendor", name=op.f("pk_agg_vendors")),
        schema="vouchers",
    )
    # M1 by revenue class and by compute share
    op.create_table(
        "agg_m1_classes",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("revenue_class", sa.Text(), nullable=False),
        *_money("issued_fen", "redeemed_fen", "vouchers"),
        sa.PrimaryKeyConstraint("year", "revenue_class", name=op.f("pk_agg_m1_classes")),
        schema="vouchers",
    )
    op.create_table(
        "agg_m1_shares",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("share", sa.Text(), nullable=False),
        *_money("issued_fen", "redeemed_fen"),
        sa.PrimaryKeyConstraint("year", "share", name=op.f("pk_agg_m1_shares")),
        schema="vouchers",
    )
    # the budget accounts (measure:year of the account, not of the event): used = issued + granted − returned
    op.create_table(
        "agg_budget",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        *_money("issued_fen", "granted_fen", "returned_fen", "reversed_fen"),
        sa.PrimaryKeyConstraint("year", "measure", name=op.f("pk_agg_budget")),
        schema="vouchers",
    )
    # per enterprise and year (top enterprises; granted is net of reversals)
    op.create_table(
        "agg_holders",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        *_money("issued_fen", "redeemed_fen", "granted_fen"),
        sa.Column("awarded_fen", FEN, sa.Computed("issued_fen + granted_fen", persisted=True), nullable=False),
        sa.PrimaryKeyConstraint("year", "holder", name=op.f("pk_agg_holders")),
        schema="vouchers",
    )
    op.create_index(
        "ix_agg_holders_ranking",
        "agg_holders",
        ["year", sa.text("awarded_fen DESC"), "holder"],
        unique=False,
        schema="vouchers",
    )
    # M3 claim-ceiling headroom by year: partial, so the redemption path (M3.redemptions rows) never
    # maintains it, and kind and year never change, so updates of used_fen stay HOT
    op.create_index(
        "ix_allowances_m3_claims_year",
        "allowances",
        ["year"],
        unique=False,
        schema="vouchers",
        postgresql_where=sa.text("kind = 'M3.claims'"),
    )
    # room in each page for the projector's updates to stay HOT (no index entry when the key columns
    # and the ranking do not change: a redemption changes a holder's redeemed_fen, not its ranking)
    for table in TABLES:
        op.execute(f"ALTER TABLE vouchers.{table} SET (fillfactor = 50)")
    op.execute(f"GRANT SELECT, UPDATE ON vouchers.projection_cursor TO {SERVICE_ROLE}")
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON vouchers.{table} TO {SERVICE_ROLE}")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"REVOKE ALL ON vouchers.{table} FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE ALL ON vouchers.projection_cursor FROM {SERVICE_ROLE}")
    op.drop_index(
        "ix_allowances_m3_claims_year",
        table_name="allowances",
        schema="vouchers",
        postgresql_where=sa.text("kind = 'M3.claims'"),
    )
    op.drop_index("ix_agg_holders_ranking", table_name="agg_holders", schema="vouchers")
    for table in reversed(TABLES):
        op.drop_table(table, schema="vouchers")
    op.drop_table("projection_cursor", schema="vouchers")
    for column in ("compute_domestic_fen", "compute_district_fen", "compute_base_fen", "revenue_class"):
        op.drop_column("vouchers", column, schema="vouchers")
