"""application counts: a projection for the dashboard's aggregates, kept by triggers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 16:00:00

`eligibility.application_counts` holds, per submission year (Shenzhen time), measure and
value, how many applications there are:

- dimension `status`: by the application's current status (in_review, reviewed, approved,
  rejected, ineligible), moved by the triggers on `applications` when the status changes;
- dimension `outcome`: by the outcome of the automatic decision made at submission
  (eligible, ineligible, needs_review), added by the trigger on `decisions` when that
  decision is inserted (A1 decisions, kind `manual_a1`, do not change it).

The triggers run in the transaction of the change, so a rolled-back request leaves no
trace, and any writer — the service, a benchmark loading rows by SQL — keeps the counts.
They are statement-level triggers over transition tables: one `INSERT … SELECT` of
100,000 applications adds one GROUP BY to that statement (not 100,000 upserts of the
same few rows), and the service's one-row statements pay one small upsert.

A consistent row set, as the service writes it (what the projection needs):

- each application has a `measure` (M1…M13), a `submitted_at` (its year in Asia/Shanghai
  time is the year counted) and a `status`;
- each application has exactly one decision with `kind = 'automatic'`, inserted after
  the application, whose `outcome` is eligible / ineligible / needs_review; its status is
  `ineligible` if that outcome is ineligible, else `in_review` (then `reviewed`, then
  `approved` or `rejected`; an A1 decision makes it `approved`).

A bulk load that bypasses the triggers (`ALTER TABLE … DISABLE TRIGGER`, `COPY` with
`session_replication_role = replica`) calls
`SELECT eligibility.rebuild_application_counts()` afterwards (also
`services.eligibility.aggregates.rebuild_application_counts`); it takes a SHARE lock on
applications and decisions, so it waits for writers in flight and blocks new ones while
it recounts.

The review queue's ages use a partial index on the waiting applications (status
in_review or reviewed) by measure and submission time: its size is the queue's, not all
applications'.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """
    CREATE TABLE eligibility.application_counts (
        year smallint NOT NULL,
        measure text NOT NULL,
        dimension text NOT NULL CHECK (dimension IN ('status', 'outcome')),
        value text NOT NULL,
        count bigint NOT NULL,
        CONSTRAINT pk_application_counts PRIMARY KEY (year, measure, dimension, value)
    )
    """,
    """
    CREATE FUNCTION eligibility.local_year(p_at timestamptz) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT extract(year FROM p_at AT TIME ZONE 'Asia/Shanghai')::smallint
    $$
    """,
    # one aggregated upsert per statement (transition tables): a bulk INSERT … SELECT of 100,000
    # applications costs one GROUP BY, and the service's one-row statements one small upsert;
    # rows are upserted in key order, so concurrent writers lock them in the same order
    """
    CREATE FUNCTION eligibility.count_application_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN  -- an UPDATE: the rows' old keys -1, new keys +1 (nothing when the status did not change)
        INSERT INTO eligibility.application_counts AS c (year, measure, dimension, value, count)
        SELECT year, measure, 'status', status, sum(delta)
        FROM (
            SELECT eligibility.local_year(submitted_at) AS year, measure, status, 1 AS delta FROM new_rows
            UNION ALL
            SELECT eligibility.local_year(submitted_at), measure, status, -1 FROM old_rows
        ) changes
        GROUP BY year, measure, status
        HAVING sum(delta) <> 0
        ORDER BY year, measure, status
        ON CONFLICT (year, measure, dimension, value) DO UPDATE SET count = c.count + EXCLUDED.count;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION eligibility.count_application_statuses_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO eligibility.application_counts AS c (year, measure, dimension, value, count)
        SELECT eligibility.local_year(submitted_at), measure, 'status', status, count(*)
        FROM new_rows GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
        ON CONFLICT (year, measure, dimension, value) DO UPDATE SET count = c.count + EXCLUDED.count;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION eligibility.count_application_statuses_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO eligibility.application_counts AS c (year, measure, dimension, value, count)
        SELECT eligibility.local_year(submitted_at), measure, 'status', status, -count(*)
        FROM old_rows GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
        ON CONFLICT (year, measure, dimension, value) DO UPDATE SET count = c.count + EXCLUDED.count;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER count_application_statuses_insert AFTER INSERT ON eligibility.applications
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION eligibility.count_application_statuses_inserted()
    """,
    """
    CREATE TRIGGER count_application_statuses_update AFTER UPDATE ON eligibility.applications
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION eligibility.count_application_statuses()
    """,
    """
    CREATE TRIGGER count_application_statuses_delete AFTER DELETE ON eligibility.applications
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION eligibility.count_application_statuses_deleted()
    """,
    """
    CREATE FUNCTION eligibility.count_application_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO eligibility.application_counts AS c (year, measure, dimension, value, count)
        SELECT eligibility.local_year(a.submitted_at), a.measure, 'outcome', d.outcome, count(*)
        FROM new_rows d JOIN eligibility.applications a ON a.id = d.application_id
        WHERE d.kind = 'automatic'
        GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
        ON CONFLICT (year, measure, dimension, value) DO UPDATE SET count = c.count + EXCLUDED.count;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER count_application_outcomes AFTER INSERT ON eligibility.decisions
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION eligibility.count_application_outcomes()
    """,
    """
    CREATE FUNCTION eligibility.rebuild_application_counts() RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        l_rows bigint;
    BEGIN
        LOCK TABLE eligibility.applications, eligibility.decisions IN SHARE MODE;
        DELETE FROM eligibility.application_counts;
        INSERT INTO eligibility.application_counts (year, measure, dimension, value, count)
        SELECT eligibility.local_year(submitted_at), measure, 'status', status, count(*)
        FROM eligibility.applications GROUP BY 1, 2, 4
        UNION ALL
        SELECT eligibility.local_year(a.submitted_at), a.measure, 'outcome', d.outcome, count(*)
        FROM eligibility.applications a
        JOIN eligibility.decisions d ON d.application_id = a.id AND d.kind = 'automatic'
        GROUP BY 1, 2, 4;
        GET DIAGNOSTICS l_rows = ROW_COUNT;
        RETURN l_rows;
    END $$
    """,
    # backfill from the rows already there
    "SELECT eligibility.rebuild_application_counts()",
    """
    CREATE INDEX ix_applications_waiting ON eligibility.applications (measure, submitted_at)
        WHERE status IN ('in_review', 'reviewed')
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX eligibility.ix_applications_waiting")
    op.execute("DROP TRIGGER count_application_outcomes ON eligibility.decisions")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER count_application_statuses_{event} ON eligibility.applications")
    for function in (
        "rebuild_application_counts",
        "count_application_outcomes",
        "count_application_statuses",
        "count_application_statuses_inserted",
        "count_application_statuses_deleted",
    ):
        op.execute(f"DROP FUNCTION eligibility.{function}()")
    op.execute("DROP FUNCTION eligibility.local_year(timestamptz)")
    op.execute("DROP TABLE eligibility.application_counts")
