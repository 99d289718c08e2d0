"""`POST /v1/facts` reads in one function, planned once per connection: a generic plan, not one per call

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-13 12:00:00

A facts call (`POST /v1/facts`, `/v1/facts/batch`) reads what its questions ask as ONE statement: a UNION ALL of one
part per kind of read (the organisation, its revenues, active affiliations, vendors by credit code, recognitions,
recognitions by id, a model, its filings on two dates, the nationally filed models), each part driven by three
arrays — the question's number, what it asks about (a key, a credit code, a model id), the day. Its text was the
same for every call, but PostgreSQL planned it again on every call: with parameters it plans the first five runs of
a prepared statement for their values, then keeps planning for them while its plan for any values (generic) looks
dearer, and for arrays whose length it cannot know it always does. Planning that statement took ~1.1 ms of
PostgreSQL's CPU per call against ~0.2 ms to run it (issue #16). Inside this function it is planned once per
connection, for any values (`plan_cache_mode = force_generic_plan`, for the function's own statement only).

Reads by key (parts 0, 3, 5, 6): one row per (question, key) with a record on the day, the record's latest snapshot
on that day. Lists as of a day (parts 1, 2, 4, 7, 8, 9): each record's latest snapshot on the day, then the part's
conditions on that snapshot (as the record lists' filters read snapshots: JSON containment), numbered in id order;
with conditions, only the records of which some snapshot matches the first are looked at (the GIN index of 0012).
The function is STABLE and runs as its caller: one snapshot, the caller's privileges.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: a record by its key column, its latest snapshot on the day: one row per (question, key) asked
BY_KEYS = """
SELECT {part} AS part, w.q, t.{key}::text AS key, {uid} AS uid, s.data, s.version, s.valid_from, s.recorded_at,
       0::bigint AS n
FROM unnest({q}::int[], {k}::text[], {d}::date[]) AS w(q, k, d)
JOIN registry.{table} t ON t.{key} = w.k::{type}
CROSS JOIN LATERAL (
    SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
    WHERE v.entity = '{entity}' AND v.entity_id = t.id AND v.valid_from <= w.d
    ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
) s
"""

#: every record of a kind as of the question's day, its snapshot filtered, numbered in id order
AS_OF = """
SELECT {part} AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
FROM unnest({q}::int[], {c}::text[], {d}::date[]) AS w(q, c, d)
CROSS JOIN LATERAL (
    SELECT {uid} AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
           row_number() OVER (ORDER BY snap.entity_id) AS n
    FROM (
        SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
        FROM registry.versions v WHERE v.entity = '{entity}' AND v.valid_from <= w.d {candidates}
        ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
    ) snap JOIN registry.{table} t ON t.id = snap.entity_id
    {where}
) x
"""


def _of(name: str) -> str:
    return f"jsonb_build_object('{name}', w.c)"


_OF_CODE = ((_of("credit_code"),),)
_OF_MODEL = ((_of("model_id"),),)
_UID = "t.uid"
_NO_UID = "NULL::uuid"

#: the ten parts, in the order of the arguments (three arrays each) and of `part`: by key (entity, table, key column
#: and its type, uid), or a list as of a day (entity, table, uid, conditions: each a list of JSON fragments one of
#: which the snapshot contains)
PARTS = (
    ("key", "organisation", "organisations", "credit_code", "text", _NO_UID),
    ("list", "revenue", "revenues", _NO_UID, _OF_CODE),
    (
        "list",
        "affiliation",
        "affiliations",
        _UID,
        ((_of("credit_code_a"), _of("credit_code_b")), ("'{\"active\": true}'::jsonb",)),
    ),
    ("key", "vendor", "vendors", "credit_code", "text", _NO_UID),
    ("list", "recognition", "recognitions", _UID, _OF_CODE),
    ("key", "recognition", "recognitions", "uid", "uuid", _UID),
    ("key", "model", "models", "uid", "uuid", _UID),
    ("list", "filing", "filings", _NO_UID, _OF_MODEL),
    ("list", "filing", "filings", _NO_UID, _OF_MODEL),
    ("list", "model", "models", _UID, ()),
)


def _part(n: int, part: tuple[object, ...]) -> str:
    q, value, day = (f"${3 * n + i}" for i in (1, 2, 3))
    if part[0] == "key":
        _, entity, table, key, type_, uid = part
        return BY_KEYS.format(part=n, q=q, k=value, d=day, key=key, uid=uid, table=table, type=type_, entity=entity)
    _, entity, table, uid, conditions = part
    assert isinstance(conditions, tuple)
    clauses = ["(" + " OR ".join(f"snap.data @> {f}" for f in alternatives) + ")" for alternatives in conditions]
    where = "WHERE " + " AND ".join(clauses) if clauses else ""
    candidates = ""
    if conditions:
        matching = " OR ".join(f"c.data @> {f}" for f in conditions[0])
        candidates = (
            f"AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c "
            f"WHERE c.entity = '{entity}' AND ({matching}))"
        )
    return AS_OF.format(
        part=n, q=q, c=value, d=day, uid=uid, table=table, entity=entity, candidates=candidates, where=where
    )


#: (question numbers, keys or the value asked about, days) for each of the ten parts, in order
SIGNATURE = f"registry.facts({', '.join(['int[], text[], date[]'] * len(PARTS))})"


def facts_function() -> str:
    body = "\nUNION ALL\n".join(_part(n, part) for n, part in enumerate(PARTS)).strip("\n")
    body = "\n".join(("        " + line).rstrip() for line in body.split("\n"))
    return f"""
CREATE FUNCTION {SIGNATURE}
RETURNS TABLE (part int, q int, key text, uid uuid, data jsonb, version int, valid_from date, recorded_at timestamptz,
               n bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
{body}
    ;
END
$fn$
"""


def upgrade() -> None:
    op.execute(facts_function())


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
