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

#: (question numbers, keys or the value asked about, days) for each of the ten parts, in order
SIGNATURE = f"registry.facts({', '.join(['int[], text[], date[]'] * 10)})"

FACTS = """
CREATE FUNCTION {signature}
RETURNS TABLE (part int, q int, key text, uid uuid, data jsonb, version int, valid_from date, recorded_at timestamptz,
               n bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
        SELECT 0 AS part, w.q, t.credit_code::text AS key, NULL::uuid AS uid, s.data, s.version, s.valid_from, s.recorded_at,
               0::bigint AS n
        FROM unnest($1::int[], $2::text[], $3::date[]) AS w(q, k, d)
        JOIN registry.organisations t ON t.credit_code = w.k::text
        CROSS JOIN LATERAL (
            SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
            WHERE v.entity = 'organisation' AND v.entity_id = t.id AND v.valid_from <= w.d
            ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
        ) s

        UNION ALL

        SELECT 1 AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
        FROM unnest($4::int[], $5::text[], $6::date[]) AS w(q, c, d)
        CROSS JOIN LATERAL (
            SELECT NULL::uuid AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
                   row_number() OVER (ORDER BY snap.entity_id) AS n
            FROM (
                SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
                FROM registry.versions v WHERE v.entity = 'revenue' AND v.valid_from <= w.d AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c WHERE c.entity = 'revenue' AND (c.data @> jsonb_build_object('credit_code', w.c)))
                ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
            ) snap JOIN registry.revenues t ON t.id = snap.entity_id
            WHERE (snap.data @> jsonb_build_object('credit_code', w.c))
        ) x

        UNION ALL

        SELECT 2 AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
        FROM unnest($7::int[], $8::text[], $9::date[]) AS w(q, c, d)
        CROSS JOIN LATERAL (
            SELECT t.uid AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
                   row_number() OVER (ORDER BY snap.entity_id) AS n
            FROM (
                SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
                FROM registry.versions v WHERE v.entity = 'affiliation' AND v.valid_from <= w.d AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c WHERE c.entity = 'affiliation' AND (c.data @> jsonb_build_object('credit_code_a', w.c) OR c.data @> jsonb_build_object('credit_code_b', w.c)))
                ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
            ) snap JOIN registry.affiliations t ON t.id = snap.entity_id
            WHERE (snap.data @> jsonb_build_object('credit_code_a', w.c) OR snap.data @> jsonb_build_object('credit_code_b', w.c)) AND (snap.data @> '{"active": true}'::jsonb)
        ) x

        UNION ALL

        SELECT 3 AS part, w.q, t.credit_code::text AS key, NULL::uuid AS uid, s.data, s.version, s.valid_from, s.recorded_at,
               0::bigint AS n
        FROM unnest($10::int[], $11::text[], $12::date[]) AS w(q, k, d)
        JOIN registry.vendors t ON t.credit_code = w.k::text
        CROSS JOIN LATERAL (
            SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
            WHERE v.entity = 'vendor' AND v.entity_id = t.id AND v.valid_from <= w.d
            ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
        ) s

        UNION ALL

        SELECT 4 AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
        FROM unnest($13::int[], $14::text[], $15::date[]) AS w(q, c, d)
        CROSS JOIN LATERAL (
            SELECT t.uid AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
                   row_number() OVER (ORDER BY snap.entity_id) AS n
            FROM (
                SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
                FROM registry.versions v WHERE v.entity = 'recognition' AND v.valid_from <= w.d AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c WHERE c.entity = 'recognition' AND (c.data @> jsonb_build_object('credit_code', w.c)))
                ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
            ) snap JOIN registry.recognitions t ON t.id = snap.entity_id
            WHERE (snap.data @> jsonb_build_object('credit_code', w.c))
        ) x

        UNION ALL

        SELECT 5 AS part, w.q, t.uid::text AS key, t.uid AS uid, s.data, s.version, s.valid_from, s.recorded_at,
               0::bigint AS n
        FROM unnest($16::int[], $17::text[], $18::date[]) AS w(q, k, d)
        JOIN registry.recognitions t ON t.uid = w.k::uuid
        CROSS JOIN LATERAL (
            SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
            WHERE v.entity = 'recognition' AND v.entity_id = t.id AND v.valid_from <= w.d
            ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
        ) s

        UNION ALL

        SELECT 6 AS part, w.q, t.uid::text AS key, t.uid AS uid, s.data, s.version, s.valid_from, s.recorded_at,
               0::bigint AS n
        FROM unnest($19::int[], $20::text[], $21::date[]) AS w(q, k, d)
        JOIN registry.models t ON t.uid = w.k::uuid
        CROSS JOIN LATERAL (
            SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
            WHERE v.entity = 'model' AND v.entity_id = t.id AND v.valid_from <= w.d
            ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
        ) s

        UNION ALL

        SELECT 7 AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
        FROM unnest($22::int[], $23::text[], $24::date[]) AS w(q, c, d)
        CROSS JOIN LATERAL (
            SELECT NULL::uuid AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
                   row_number() OVER (ORDER BY snap.entity_id) AS n
            FROM (
                SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
                FROM registry.versions v WHERE v.entity = 'filing' AND v.valid_from <= w.d AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c WHERE c.entity = 'filing' AND (c.data @> jsonb_build_object('model_id', w.c)))
                ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
            ) snap JOIN registry.filings t ON t.id = snap.entity_id
            WHERE (snap.data @> jsonb_build_object('model_id', w.c))
        ) x

        UNION ALL

        SELECT 8 AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
        FROM unnest($25::int[], $26::text[], $27::date[]) AS w(q, c, d)
        CROSS JOIN LATERAL (
            SELECT NULL::uuid AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
                   row_number() OVER (ORDER BY snap.entity_id) AS n
            FROM (
                SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
                FROM registry.versions v WHERE v.entity = 'filing' AND v.valid_from <= w.d AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c WHERE c.entity = 'filing' AND (c.data @> jsonb_build_object('model_id', w.c)))
                ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
            ) snap JOIN registry.filings t ON t.id = snap.entity_id
            WHERE (snap.data @> jsonb_build_object('model_id', w.c))
        ) x

        UNION ALL

        SELECT 9 AS part, w.q, NULL::text AS key, x.uid, x.data, x.version, x.valid_from, x.recorded_at, x.n
        FROM unnest($28::int[], $29::text[], $30::date[]) AS w(q, c, d)
        CROSS JOIN LATERAL (
            SELECT t.uid AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
                   row_number() OVER (ORDER BY snap.entity_id) AS n
            FROM (
                SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
                FROM registry.versions v WHERE v.entity = 'model' AND v.valid_from <= w.d
                ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
            ) snap JOIN registry.models t ON t.id = snap.entity_id

        ) x
    ;
END
$fn$
"""


def upgrade() -> None:
    op.execute(FACTS.replace("{signature}", SIGNATURE))


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
