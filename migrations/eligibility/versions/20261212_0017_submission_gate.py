"""a submission is written only if no other of its applicant and measure came in since it read; awards by claim key

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12 12:00:00

Submissions of one applicant and measure must see each other (annual caps, the year's base, claim keys in review).
They were serialised by a transaction-scoped advisory lock taken before their reads and held until their commit:
BEGIN, the lock, the reads, the rows, COMMIT, each a round trip, with the lock held while the service evaluated
(issue #16). Now a submission reads without a lock (one statement, one snapshot, in autocommit), evaluates, and
writes its rows with one statement (in autocommit too) that first calls `submission_gate()`: it takes the same lock,
then looks, with a snapshot taken after the lock is granted, for an application of this applicant and measure
newer than the newest the reads saw (`p_seen`, the largest `seq`). If there is one, the statement writes nothing
and the service reads and evaluates again; if not, the rows are written and committed while the lock is held, so
the next submission's gate sees them. Applications of one applicant and measure are inserted only under this lock,
so their `seq` order is their commit order.

The function runs as the caller; EXECUTE is granted to `eligibility_writer` only.

The read looks up who holds the application's claim keys; two of its paths read more than those keys:
- awarded keys: the register's unique index on `claim_key` is partial (rows that override no award), and the
  read asks for every row of a key (an A1 override holds it after the award it overrides), so it read the whole
  register. `ix_awards_claim_key` indexes every row.
- keys in review: the read joined each decision holding a key to its application by `current_decision_id`,
  which no index covers, and walked every application in review (1.4 ms per submission at 7,300 waiting, and
  growing with the queue). It now joins by the decision's `application_id` (its application's primary key): no
  migration, the statement changed in `services/eligibility/submission_sql.py`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "eligibility_writer"
SIGNATURE = "eligibility.submission_gate(text, text, bigint)"

SUBMISSION_GATE = """
CREATE FUNCTION eligibility.submission_gate(p_applicant text, p_measure text, p_seen bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
-- the applicant's lock for the measure (held until the calling transaction ends), then: is the newest application
-- of this applicant and measure still the one the submission's reads saw? (VOLATILE: the query below takes its
-- snapshot after the lock is granted, so it sees what the lock's previous holder committed)
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('eligibility:' || p_applicant || ':' || p_measure));
    RETURN coalesce((
        SELECT max(a.seq) FROM eligibility.applications a WHERE a.applicant = p_applicant AND a.measure = p_measure
    ), 0) = p_seen;
END
$$
"""


def upgrade() -> None:
    op.execute("CREATE INDEX ix_awards_claim_key ON eligibility.awards (claim_key)")
    op.execute(SUBMISSION_GATE)
    op.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {GROUP}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute("DROP INDEX eligibility.ix_awards_claim_key")
