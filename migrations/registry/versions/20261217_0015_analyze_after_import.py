"""a bulk import that wrote many rows has its tables analysed at once, not when autovacuum comes by

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-17 10:00:00

The registry's facts function (0013) is planned once per connection, for any values, from the statistics of that
moment. A registry filled by its first bulk imports still has the statistics of empty tables until autovacuum
analyses them (a minute or so): meanwhile each facts call scans every organisation and, per list, every snapshot
of the kind. `registry.analyze_after_import(table)` lets the service (its login, `registry_writer`, may not ANALYZE
tables it does not own) analyse a table it has just imported into and the snapshots' table; the new statistics
invalidate every connection's plans, which are made again. It runs as its owner (SECURITY DEFINER, fixed
search_path) and analyses only the registry's record tables. It waits at most 100 ms for the table (`lock_timeout`):
an import still writing it holds a lock ANALYZE must wait for, and that import analyses the table when it is done.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "registry_writer"
FUNCTION = "registry.analyze_after_import(text)"
TABLES = ("organisations", "revenues", "affiliations", "vendors", "models", "filings", "recognitions", "versions")

ANALYZE = f"""
CREATE FUNCTION registry.analyze_after_import(p_table text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '100ms' AS $$
BEGIN
    IF p_table <> ALL (ARRAY[{", ".join(f"'{table}'" for table in TABLES)}]) THEN
        RAISE EXCEPTION 'registry.analyze_after_import: % is not a record table of the registry', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ANALYZE registry.%I', p_table);
END
$$
"""


def upgrade() -> None:
    op.execute(ANALYZE)
    op.execute(f"REVOKE EXECUTE ON FUNCTION {FUNCTION} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {FUNCTION} TO {GROUP}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {FUNCTION}")
