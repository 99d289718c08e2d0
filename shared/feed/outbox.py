"""Writing events in the caller's transaction (`emit`), and how far the dispatcher is behind (`outbox_lag`)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.feed.catalogue import schema_of


@dataclass(frozen=True)
class NewEvent:
    """An event to write: `type` from `EVENT_TYPES`, whose first part names the service's schema."""

    type: str
    subject: str
    payload: Mapping[str, Any]
    organisation: str | None = None
    vendor: str | None = None


def _json(payload: Mapping[str, Any]) -> str:
    """JSON text of a payload (dates, UUIDs, decimals and models as pydantic writes them)."""
    return pydantic_core.to_json(payload).decode()


async def emit(
    target: AsyncSession | AsyncConnection | Any,
    type: str,
    subject: str,
    payload: Mapping[str, Any],
    organisation: str | None = None,
    vendor: str | None = None,
) -> None:
    """Write one event in the caller's transaction (an AsyncSession, or an asyncpg connection)."""
    await emit_many(target, [NewEvent(type, subject, payload, organisation, vendor)])


def outbox_rows(events: Sequence[NewEvent]) -> tuple[str, tuple[list[Any], ...]]:
    """The schema the events go to and their columns (type, subject, organisation, vendor, payload as JSON text),
    for `OUTBOX_INSERT` or a statement that writes them along with other rows."""
    schemas = {schema_of(event.type) for event in events}
    if len(schemas) != 1:
        raise ValueError(f"events of one service at a time, not {sorted(schemas)}")
    columns = (
        [event.type for event in events],
        [event.subject for event in events],
        [event.organisation for event in events],
        [event.vendor for event in events],
        [_json(event.payload) for event in events],
    )
    return schemas.pop(), columns


#: the events' rows, in the given order; `{schema}`, the five text arrays `{t}`…`{p}` (`asyncpg_arrays`) and `{where}`
#: filled in: "" for every event, or " WHERE <condition>" for a statement that writes them only if it writes its rows
OUTBOX_INSERT = (
    'INSERT INTO "{schema}".outbox (type, subject, organisation, vendor, payload) '
    "SELECT t, s, o, v, p::jsonb FROM unnest({t}, {s}, {o}, {v}, {p}) WITH ORDINALITY AS e(t, s, o, v, p, n)"
    "{where} ORDER BY n"
)


def asyncpg_arrays(first: int) -> dict[str, str]:
    """`OUTBOX_INSERT`'s arrays as asyncpg parameters, numbered from `first`."""
    return {name: f"${n}::text[]" for n, name in enumerate("tsovp", first)}


async def emit_many(target: AsyncSession | AsyncConnection | Any, events: Sequence[NewEvent]) -> None:
    """Write events in the caller's transaction, in the given order (one statement)."""
    if not events:
        return
    schema, columns = outbox_rows(events)
    if isinstance(target, AsyncSession | AsyncConnection):
        arrays = {name: f"CAST(:{name} AS text[])" for name in "tsovp"}  # SQLAlchemy's binds (`:t::` is no bind)
        await target.execute(
            text(OUTBOX_INSERT.format(schema=schema, where="", **arrays)), dict(zip("tsovp", columns, strict=True))
        )
    else:  # an asyncpg connection (or pool connection proxy)
        await target.execute(OUTBOX_INSERT.format(schema=schema, where="", **asyncpg_arrays(1)), *columns)


# --- lag (for /metrics, computed at scrape time) ---------------------------------------------------

#: pending events are counted per subscription up to this many (the count is then a lower bound)
LAG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class OutboxLag:
    subscriptions: dict[str, int]  # by status
    undelivered: int  # events after the active subscriptions' positions (each counted up to LAG_COUNT_CAP)
    oldest_age_seconds: float  # age of the oldest event an active subscription still waits for (0: none)


async def outbox_lag(connection: AsyncConnection, schema: str) -> OutboxLag:
    """How far the webhook dispatcher is behind: a bounded index range per active subscription, no table scan.

    An active subscription waits for the events after its position (in feed order,
    `ix_outbox_txid_id`): the first of them says how old its wait is, and up to
    LAG_COUNT_CAP of them are counted. Suspended and deactivated subscriptions are only
    counted (a suspended one waits until someone resumes it).
    """
    s = f'"{schema}"'
    rows = (
        await connection.execute(
            text(
                f"""
                SELECT w.status, count(*) AS subscriptions,
                       coalesce(sum(p.pending), 0)::bigint AS pending,
                       coalesce(extract(epoch FROM clock_timestamp() - min(n.occurred_at)), 0)::float8 AS age
                FROM {s}.webhook_subscriptions w
                LEFT JOIN LATERAL (
                    SELECT o.occurred_at FROM {s}.outbox o
                    WHERE w.status = 'active' AND (o.txid, o.id) > (w.cursor_txid, w.cursor_id)
                    ORDER BY o.txid, o.id LIMIT 1
                ) n ON true
                LEFT JOIN LATERAL (
                    SELECT count(*) AS pending FROM (
                        SELECT 1 FROM {s}.outbox o
                        WHERE w.status = 'active' AND (o.txid, o.id) > (w.cursor_txid, w.cursor_id)
                        ORDER BY o.txid, o.id  -- keeps it an index range (without, a seq scan)
                        LIMIT :cap
                    ) waiting
                ) p ON true
                GROUP BY w.status
                """
            ),
            {"cap": LAG_COUNT_CAP},
        )
    ).all()
    by_status = {str(row.status): int(row.subscriptions) for row in rows}
    active = [row for row in rows if row.status == "active"]
    return OutboxLag(
        subscriptions={status: by_status.get(status, 0) for status in ("active", "suspended", "deactivated")},
        undelivered=int(active[0].pending) if active else 0,
        oldest_age_seconds=max(0.0, float(active[0].age)) if active else 0.0,
    )
