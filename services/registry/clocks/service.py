"""Test clocks and the enterprises bound to them: what each route checks, and its SQL.

A clock is frozen at its `frozen_time` until an administrator advances it, forward only (a conditional
UPDATE here, and a trigger in the database: migrations/registry 0010). An enterprise is bound to one
clock at most (the binding's key is its credit code); deleting a clock unbinds its enterprises, which
return to the real clock. Each function only executes: the request's dependency commits.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.errors import ProblemError
from shared.pagination import Page, decode_cursor, encode_cursor

from .errors import (
    TEST_CLOCK_BACKWARDS,
    TEST_CLOCK_BOUND_ELSEWHERE,
    TEST_CLOCK_FULL,
    TEST_CLOCK_NOT_BOUND,
    TEST_CLOCK_NOT_FOUND,
    TEST_CLOCK_ORGANISATION_NOT_FOUND,
)
from .schemas import ClockAdvance, ClockBindingRead, ClockCreate, ClockRead, EnterpriseClockRead

CLOCKS = "test-clocks"
BINDINGS = "test-clock-bindings"
#: Enterprises one clock binds at most (a sandbox's handful of test enterprises, as Stripe's clocks).
MAX_ENTERPRISES = 100

_CLOCK = "SELECT seq, id, name, frozen_time, created_by, created_at, advanced_at FROM registry.test_clocks"
_BINDING = (
    "SELECT b.seq, b.credit_code, b.clock_id, c.frozen_time, b.bound_by, b.bound_at "
    "FROM registry.test_clock_bindings b JOIN registry.test_clocks c ON c.id = b.clock_id"
)


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in (await session.execute(text(sql), params)).mappings().all()]


async def _enterprises(session: AsyncSession, clock_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = {clock_id: [] for clock_id in clock_ids}
    if clock_ids:
        sql = (
            "SELECT clock_id, credit_code FROM registry.test_clock_bindings WHERE clock_id = ANY(:ids) "
            "ORDER BY credit_code"
        )
        for row in await _rows(session, sql, ids=clock_ids):
            found[row["clock_id"]].append(row["credit_code"])
    return found


def _read(row: dict[str, Any], enterprises: list[str]) -> ClockRead:
    fields = {key: value for key, value in row.items() if key != "seq"}
    return ClockRead(**fields, enterprises=enterprises)


async def _clock(session: AsyncSession, clock_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    rows = await _rows(session, _CLOCK + " WHERE id = :id" + (" FOR UPDATE" if lock else ""), id=clock_id)
    if not rows:
        raise ProblemError(TEST_CLOCK_NOT_FOUND, clock_id=str(clock_id))
    return rows[0]


async def read(session: AsyncSession, clock_id: uuid.UUID) -> ClockRead:
    row = await _clock(session, clock_id)
    return _read(row, (await _enterprises(session, [clock_id]))[clock_id])


async def create(session: AsyncSession, principal: Principal, payload: ClockCreate) -> ClockRead:
    sql = (
        "INSERT INTO registry.test_clocks (id, name, frozen_time, created_by) VALUES (:id, :name, :time, :by) "
        "RETURNING seq, id, name, frozen_time, created_by, created_at, advanced_at"
    )
    rows = await _rows(session, sql, id=uuid.uuid4(), name=payload.name, time=payload.frozen_time, by=principal.actor)
    return _read(rows[0], [])


async def page(session: AsyncSession, cursor: str | None, limit: int) -> Page[ClockRead]:
    after = decode_cursor(CLOCKS, cursor) if cursor else 0
    rows = await _rows(session, _CLOCK + " WHERE seq > :after ORDER BY seq LIMIT :limit", after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    enterprises = await _enterprises(session, [row["id"] for row in rows])
    return Page[ClockRead](
        items=[_read(row, enterprises[row["id"]]) for row in rows],
        next_cursor=encode_cursor(CLOCKS, int(rows[-1]["seq"])) if more and rows else None,
    )


async def advance(session: AsyncSession, clock_id: uuid.UUID, payload: ClockAdvance) -> ClockRead:
    """Forward only: a time not later than the clock's is refused (409), the clock unchanged."""
    sql = (
        "UPDATE registry.test_clocks SET frozen_time = :time, advanced_at = clock_timestamp() "
        "WHERE id = :id AND frozen_time < :time "
        "RETURNING seq, id, name, frozen_time, created_by, created_at, advanced_at"
    )
    rows = await _rows(session, sql, id=clock_id, time=payload.frozen_time)
    if not rows:
        current = await _clock(session, clock_id)
        raise ProblemError(
            TEST_CLOCK_BACKWARDS,
            frozen_time=current["frozen_time"].isoformat(),
            requested=payload.frozen_time.isoformat(),
        )
    return _read(rows[0], (await _enterprises(session, [clock_id]))[clock_id])


async def delete(session: AsyncSession, clock_id: uuid.UUID) -> None:
    """The clock and its bindings (ON DELETE CASCADE): its enterprises return to the real clock."""
    rows = await _rows(session, "DELETE FROM registry.test_clocks WHERE id = :id RETURNING id", id=clock_id)
    if not rows:
        raise ProblemError(TEST_CLOCK_NOT_FOUND, clock_id=str(clock_id))


async def _binding(session: AsyncSession, credit_code: str) -> dict[str, Any] | None:
    rows = await _rows(session, _BINDING + " WHERE b.credit_code = :code", code=credit_code)
    return rows[0] if rows else None


def _binding_read(row: dict[str, Any]) -> ClockBindingRead:
    return ClockBindingRead(**{key: value for key, value in row.items() if key != "seq"})


async def bind(
    session: AsyncSession, principal: Principal, clock_id: uuid.UUID, credit_code: str
) -> tuple[ClockBindingRead, bool]:
    """Bind an organisation to the clock; True if it is new (binding it again answers the binding as it is)."""
    await _clock(session, clock_id, lock=True)  # binds to one clock are serialised: the limit holds
    organisation = await _rows(
        session, "SELECT 1 AS found FROM registry.organisations WHERE credit_code = :code", code=credit_code
    )
    if not organisation:
        raise ProblemError(TEST_CLOCK_ORGANISATION_NOT_FOUND, credit_code=credit_code)
    existing = await _binding(session, credit_code)
    if existing is not None:
        if existing["clock_id"] != clock_id:
            raise ProblemError(TEST_CLOCK_BOUND_ELSEWHERE, credit_code=credit_code, clock_id=str(existing["clock_id"]))
        return _binding_read(existing), False
    count = await _rows(
        session, "SELECT count(*) AS n FROM registry.test_clock_bindings WHERE clock_id = :id", id=clock_id
    )
    if count[0]["n"] >= MAX_ENTERPRISES:
        raise ProblemError(TEST_CLOCK_FULL, limit=MAX_ENTERPRISES)
    inserted = await _rows(
        session,
        "INSERT INTO registry.test_clock_bindings (credit_code, clock_id, bound_by) VALUES (:code, :id, :by) "
        "ON CONFLICT (credit_code) DO NOTHING RETURNING credit_code",
        code=credit_code,
        id=clock_id,
        by=principal.actor,
    )
    row = await _binding(session, credit_code)
    if row is None or row["clock_id"] != clock_id:  # bound elsewhere meanwhile (then unbound: not ours either)
        other = str(row["clock_id"]) if row else "-"
        raise ProblemError(TEST_CLOCK_BOUND_ELSEWHERE, credit_code=credit_code, clock_id=other)
    return _binding_read(row), bool(inserted)


async def unbind(session: AsyncSession, clock_id: uuid.UUID, credit_code: str) -> None:
    await _clock(session, clock_id)
    rows = await _rows(
        session,
        "DELETE FROM registry.test_clock_bindings WHERE credit_code = :code AND clock_id = :id RETURNING credit_code",
        code=credit_code,
        id=clock_id,
    )
    if not rows:
        raise ProblemError(TEST_CLOCK_NOT_BOUND, credit_code=credit_code, clock_id=str(clock_id))


async def clock_of(session: AsyncSession, credit_code: str) -> EnterpriseClockRead:
    """The enterprise's test clock, or none (the real clock): what eligibility and vouchers ask."""
    binding = await _binding(session, credit_code)
    if binding is None:
        return EnterpriseClockRead(credit_code=credit_code, test_clock=None)
    return EnterpriseClockRead(credit_code=credit_code, test_clock=await read(session, binding["clock_id"]))


async def bindings(session: AsyncSession, cursor: str | None, limit: int) -> Page[ClockBindingRead]:
    """Every bound enterprise with its clock's time (the vouchers service's expiry run reads them all)."""
    after = decode_cursor(BINDINGS, cursor) if cursor else 0
    rows = await _rows(
        session, _BINDING + " WHERE b.seq > :after ORDER BY b.seq LIMIT :limit", after=after, limit=limit + 1
    )
    more, rows = len(rows) > limit, rows[:limit]
    return Page[ClockBindingRead](
        items=[_binding_read(row) for row in rows],
        next_cursor=encode_cursor(BINDINGS, int(rows[-1]["seq"])) if more and rows else None,
    )
