"""award register: claim keys awarded once, annual caps per enterprise year, built from history

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 14:30:00

- `decisions` gain `claims` (the keys a decision pays for), `caps` (the annual caps it
  uses) and `basis` (what a later application of the same year builds on). Decisions stay
  append-only: the columns are filled when a decision is made.
- `awards` is the register: one row per key an approved award pays for, unique per key
  unless a row names the award it overrides (A1) and why; append-only.
- `year_caps`: one row per enterprise, cap and year; awards take it with a conditional
  UPDATE (CHECK used ≤ limit).

History: every approved application's current decision is registered with the keys its
evidence and components name (`services.eligibility.rules.claims_of_record`). Where
history already holds two awards on one key, the later one is registered as overriding
the earlier with the reason "found in history", never dropped: `GET /v1/awards/double`
lists them for auditors. Decisions made before this migration have no `caps`; their
amounts still count in the rules' year totals (prior awards), but the year_caps rows
start from the first approval after it.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from shared.migrations import append_only_sql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE eligibility.decisions ADD COLUMN claims text[] NOT NULL DEFAULT '{}'")
    op.execute("ALTER TABLE eligibility.decisions ADD COLUMN caps jsonb NOT NULL DEFAULT '[]'")
    op.execute("ALTER TABLE eligibility.decisions ADD COLUMN basis jsonb NOT NULL DEFAULT '{}'")
    op.execute("CREATE INDEX ix_decisions_claims ON eligibility.decisions USING gin (claims)")
    op.execute(
        """
        CREATE TABLE eligibility.awards (
            id bigint GENERATED ALWAYS AS IDENTITY,
            claim_key text NOT NULL,
            clause text NOT NULL,
            measure text NOT NULL,
            applicant text NOT NULL,
            benefit_year smallint NOT NULL,
            application_id uuid NOT NULL,
            decision_id uuid NOT NULL,
            amount_fen bigint NOT NULL,
            path text NOT NULL,
            overrides_id bigint,
            override_reason text,
            actor text,
            request_id text,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT pk_awards PRIMARY KEY (id),
            CONSTRAINT fk_awards_application_id_applications FOREIGN KEY (application_id)
                REFERENCES eligibility.applications (id),
            CONSTRAINT fk_awards_decision_id_decisions FOREIGN KEY (decision_id) REFERENCES eligibility.decisions (id),
            CONSTRAINT fk_awards_overrides_id_awards FOREIGN KEY (overrides_id) REFERENCES eligibility.awards (id),
            CONSTRAINT uq_awards_overrides_id UNIQUE (overrides_id),
            CONSTRAINT ck_awards_override_has_reason CHECK ((overrides_id IS NULL) = (override_reason IS NULL)),
            CONSTRAINT ck_awards_path CHECK (path IN ('automatic', 'manual_a1', 'history'))
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX uq_awards_claim_key ON eligibility.awards (claim_key) WHERE overrides_id IS NULL")
    op.execute("CREATE INDEX ix_awards_application ON eligibility.awards (application_id)")
    op.execute("CREATE INDEX ix_awards_applicant_measure ON eligibility.awards (applicant, measure)")
    for statement in append_only_sql("eligibility", "awards"):
        op.execute(statement)
    op.execute(
        """
        CREATE TABLE eligibility.year_caps (
            applicant text NOT NULL,
            kind text NOT NULL,
            year smallint NOT NULL,
            limit_fen bigint NOT NULL,
            used_fen bigint NOT NULL,
            clause text NOT NULL,
            parameter text NOT NULL,
            CONSTRAINT pk_year_caps PRIMARY KEY (applicant, kind, year),
            CONSTRAINT ck_year_caps_within_limit CHECK (used_fen >= 0 AND used_fen <= limit_fen)
        )
        """
    )
    _register_history()


def _register_history() -> None:
    """Register what earlier approvals paid for; a key found twice is kept and marked, never dropped."""
    from services.eligibility.rules import claims_of_record

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            """
            SELECT a.id AS application_id, a.measure, a.applicant, a.benefit_year, a.evidence,
                   d.id AS decision_id, d.kind, d.components, d.trace, d.decided_by,
                   coalesce((SELECT r.amount_fen FROM eligibility.reviews r
                             WHERE r.application_id = a.id AND r.step = 'approval' AND r.verdict = 'approve'
                             ORDER BY r.created_at DESC LIMIT 1), d.amount_fen, 0) AS amount_fen,
                   (SELECT r.actor FROM eligibility.reviews r
                     WHERE r.application_id = a.id AND r.step = 'approval' AND r.verdict = 'approve'
                     ORDER BY r.created_at DESC LIMIT 1) AS approver
            FROM eligibility.applications a
            JOIN eligibility.decisions d ON d.id = a.current_decision_id
            WHERE a.status = 'approved'
            ORDER BY a.seq
            """
        )
    ).mappings()
    holders: dict[str, int] = {}
    for row in rows:
        superseded = _superseded_components(bind, row) if row["kind"] == "manual_a1" else None
        keys = claims_of_record(
            row["measure"], row["applicant"], row["evidence"], superseded or row["components"], row["trace"]
        )
        for claim_key in keys:
            previous = holders.get(claim_key)
            award_id = bind.execute(
                sa.text(
                    """
                    INSERT INTO eligibility.awards (claim_key, clause, measure, applicant, benefit_year,
                        application_id, decision_id, amount_fen, path, overrides_id, override_reason, actor)
                    VALUES (:key, :clause, :measure, :applicant, :year, :application, :decision, :amount,
                        'history', :overrides, :reason, :actor)
                    RETURNING id
                    """
                ),
                {
                    "key": claim_key,
                    "clause": _clause(claim_key),
                    "measure": row["measure"],
                    "applicant": row["applicant"],
                    "year": row["benefit_year"],
                    "application": row["application_id"],
                    "decision": row["decision_id"],
                    "amount": int(row["amount_fen"]),
                    "overrides": previous,
                    "reason": "found in history: awarded twice before the register existed (migration 0007)"
                    if previous
                    else None,
                    "actor": row["approver"] or row["decided_by"],
                },
            ).scalar_one()
            holders[claim_key] = int(award_id)


def _superseded_components(bind: Any, row: Any) -> dict[str, int] | None:
    """An A1 decision paid for what the decision it superseded asked for."""
    superseded = (row["trace"] or [{}])[0].get("inputs", {}).get("supersedes")
    if not superseded:
        return None
    found = bind.execute(
        sa.text("SELECT components FROM eligibility.decisions WHERE id = :id"), {"id": superseded}
    ).scalar_one_or_none()
    return dict(found) if found else None


def _clause(claim_key: str) -> str:
    from services.eligibility.rules.claims import kind_of

    return kind_of(claim_key).clause


def downgrade() -> None:
    op.execute("DROP TABLE eligibility.year_caps")
    op.execute("DROP FUNCTION eligibility.refuse_change_awards() CASCADE")
    op.execute("DROP TABLE eligibility.awards")
    op.execute("DROP INDEX eligibility.ix_decisions_claims")
    for column in ("basis", "caps", "claims"):
        op.execute(f"ALTER TABLE eligibility.decisions DROP COLUMN {column}")
