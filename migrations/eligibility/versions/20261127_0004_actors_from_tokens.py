"""actors from tokens: request id and client id on reviews and decisions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:00:00

Reviews, approvals and A1 decisions are made by the authenticated client (the token's
`sub` and `name`), not by a name in the request body. Each row keeps the client id and
the request id, which is also the audit row's (`GET /v1/audit?request_id=`). Parameter
versions already had a request id; they get the client id too. Older rows stay NULL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "reviews": ("request_id", "client_id"),
    "decisions": ("request_id", "client_id"),
    "parameter_versions": ("client_id",),
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.add_column(table, sa.Column(column, sa.Text(), nullable=True), schema="eligibility")


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.drop_column(table, column, schema="eligibility")
