"""application counts kept in shards: concurrent submissions of a measure no longer queue for one row

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-13 12:00:00

Every submission's triggers (migration 0006) add 1 to two rows of `eligibility.application_counts`: its year, measure
and status, and its year, measure and automatic outcome. A row updated by one transaction stays locked until that
transaction commits, so every submission of a measure waited for the previous one's commit (WAL flush included):
with one statement per submission (0017), `pg_stat_statements` put 0.7 ms of the insert's 1.27 ms mean in the first
counting upsert, nearly all of it waiting (the second upsert, on rows taken after the first, 0.03 ms).

Now each count is split over up to 32 rows, `shard` = the PostgreSQL backend's pid modulo 32: a connection runs
one transaction at a time, so two submissions wait for each other only when their connections fall in the same
shard. A count is the sum of its shards (`services/eligibility/aggregates.py`); one shard may go below zero (an
application counted in one shard as in review and moved out of it from another connection), the sum cannot. The
projection stays a few hundred rows per shard at most, whatever the number of applications.
`eligibility.rebuild_application_counts()` writes its counts in shard 0 (the column's default).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 32
#: what a count counts (0006's primary key; the shard is added to it)
KEY = "year, measure, dimension, value"

#: how each of migration 0006's four counting functions counts the rows of its statement (the same bodies), with
#: `{shard_value}` after the count left open: the upgrade writes each count in the backend's shard, the downgrade
#: as 0006 did
COUNTED = {
    "count_application_statuses": """
        SELECT year, measure, 'status', status, sum(delta){shard_value}
        FROM (
            SELECT eligibility.local_year(submitted_at) AS year, measure, status, 1 AS delta FROM new_rows
            UNION ALL
            SELECT eligibility.local_year(submitted_at), measure, status, -1 FROM old_rows
        ) changes
        GROUP BY year, measure, status
        HAVING sum(delta) <> 0
        ORDER BY year, measure, status""",
    "count_application_statuses_inserted": """
        SELECT eligibility.local_year(submitted_at), measure, 'status', status, count(*){shard_value}
        FROM new_rows GROUP BY 1, 2, 4 ORDER BY 1, 2, 4""",
    "count_application_statuses_deleted": """
        SELECT eligibility.local_year(submitted_at), measure, 'status', status, -count(*){shard_value}
        FROM old_rows GROUP BY 1, 2, 4 ORDER BY 1, 2, 4""",
    "count_application_outcomes": """
        SELECT eligibility.local_year(a.submitted_at), a.measure, 'outcome', d.outcome, count(*){shard_value}
        FROM new_rows d JOIN eligibility.applications a ON a.id = d.application_id
        WHERE d.kind = 'automatic'
        GROUP BY 1, 2, 4 ORDER BY 1, 2, 4""",
}

#: a counting function: its statement's rows counted, upserted in key order (concurrent writers lock rows in the
#: same order); `{shard}` is the shard column's place in the column list and the conflict target
FUNCTION = """
CREATE OR REPLACE FUNCTION eligibility.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eligibility.application_counts AS c (year, measure, dimension, value, count{shard}){counted}
    ON CONFLICT (year, measure, dimension, value{shard}) DO UPDATE SET count = c.count + EXCLUDED.count;
    RETURN NULL;
END $$
"""

COUNT_SHARD = f"""
CREATE FUNCTION eligibility.count_shard() RETURNS smallint LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- the shard of application_counts this connection adds to: one transaction at a time per backend
    SELECT (pg_backend_pid() % {SHARDS})::smallint
$$
"""


def _functions(*, sharded: bool) -> None:
    shard, shard_value = (", shard", ", eligibility.count_shard()") if sharded else ("", "")
    for name, counted in COUNTED.items():
        op.execute(FUNCTION.format(name=name, shard=shard, counted=counted.format(shard_value=shard_value)))


def upgrade() -> None:
    op.execute("ALTER TABLE eligibility.application_counts ADD COLUMN shard smallint NOT NULL DEFAULT 0")
    op.execute(
        "ALTER TABLE eligibility.application_counts DROP CONSTRAINT pk_application_counts, "
        f"ADD CONSTRAINT pk_application_counts PRIMARY KEY ({KEY}, shard)"
    )
    op.execute(COUNT_SHARD)
    _functions(sharded=True)


def downgrade() -> None:
    _functions(sharded=False)
    op.execute("DROP FUNCTION eligibility.count_shard()")
    # the shards folded into one row per count, as 0006 kept them
    op.execute(
        f"""
        CREATE TEMPORARY TABLE folded ON COMMIT DROP AS
        SELECT {KEY}, sum(count) AS count FROM eligibility.application_counts GROUP BY {KEY}
        """
    )
    op.execute("DELETE FROM eligibility.application_counts")
    op.execute(
        "ALTER TABLE eligibility.application_counts DROP CONSTRAINT pk_application_counts, DROP COLUMN shard, "
        f"ADD CONSTRAINT pk_application_counts PRIMARY KEY ({KEY})"
    )
    op.execute(f"INSERT INTO eligibility.application_counts ({KEY}, count) SELECT {KEY}, count FROM folded")
