"""How every connection reaches PostgreSQL: directly, or through PgBouncer (issue #15).

`<SERVICE>_DB_POOLER` says what is between a service and its database: `none` (the default),
`session` or `transaction` (PgBouncer's `pool_mode`). Every place that connects — the
SQLAlchemy engine (shared/db.py), the redemption pool, the webhook dispatcher's pool, the
sealer's, projector's and reconcilers' own connections, the audit writer, the rate limits, the
exports — takes its asyncpg arguments from `connect_options`, which reads the mode declared for
the URL (`declare`, called by `shared.app.create_service_app` for the service's URLs).

- **Direct** (`none`): the timeouts travel as startup parameters (asyncpg `server_settings`),
  as before.
- **Behind PgBouncer** (`session`, `transaction`): PgBouncer refuses every startup parameter
  but the few it tracks (`unsupported startup parameter: statement_timeout`; `role` likewise),
  and `ignore_startup_parameters` would let a connection in *without* them. So only the tracked
  ones are sent (`application_name`, `client_encoding`, `DateStyle`, `TimeZone`), and the
  timeouts are the login's own defaults (`ALTER ROLE vouchers_app SET statement_timeout = …`,
  set by `shared.dbroles.ensure_logins`): they hold on every server connection PgBouncer hands
  out, in either mode, and survive asyncpg's `RESET ALL` and PgBouncer's `DISCARD ALL`. A
  service checks them at start-up (`check_login_defaults`) and refuses to start without them.
  A `role` to switch to is refused (`VOUCHERS_DB_ROLE`): each service logs in as its own role.
- **Transaction pooling** also breaks what asyncpg keeps per connection. Its statement cache
  is off (`statement_cache_size=0`): a cached statement is named and lives on one server
  connection, and PgBouncer hands the next transaction another one, where the name is missing
  or is another process's statement (`DuplicatePreparedStatementError`, `bind message supplies 1
  parameters, but prepared statement … requires 0`). Uncached, asyncpg sends Parse, Describe and
  Flush, then Bind, Execute and Sync: no Sync in between, so PgBouncer keeps the server
  connection for the whole statement (tests/pooler). The SQLAlchemy engine names its prepared
  statements uniquely and keeps none (shared/db.py). The connection class is `TransactionPooled`,
  whose pool reset sends nothing: the server connection is not ours, and asyncpg's `RESET ALL`,
  `pg_advisory_unlock_all()` would land on another client's. Session state is never relied on:
  no session-level advisory lock (the ledger checkpoint holds a transaction-level one on a
  connection of its own), no LISTEN/NOTIFY, no `SET` without `LOCAL` (exports set theirs with
  `SET LOCAL` in their transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, get_args

import asyncpg

logger = logging.getLogger("shared.dbconnect")

Pooler = Literal["none", "session", "transaction"]
POOLERS: tuple[str, ...] = get_args(Pooler)
#: Startup parameters PgBouncer tracks and accepts (the others: `unsupported startup parameter`).
TRACKED = frozenset({"application_name", "client_encoding", "DateStyle", "TimeZone", "standard_conforming_strings"})
#: The settings a login's defaults carry behind a pooler (shared/dbroles.py sets them).
TIMEOUTS = ("statement_timeout", "idle_in_transaction_session_timeout")

_declared: dict[str, Pooler] = {}


class PoolerRefused(RuntimeError):
    """A configuration that cannot work behind PgBouncer: refused at start-up, never silently dropped."""


def libpq_url(url: str) -> str:
    """`url` as asyncpg and libpq's tools take it: SQLAlchemy's async URLs name the driver (`postgresql+asyncpg://`)."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


def declare(url: str, pooler: Pooler) -> None:
    """Connections to `url` go through a pooler of this mode (`none`: directly)."""
    if pooler not in POOLERS:
        raise PoolerRefused(f"DB_POOLER must be one of {', '.join(POOLERS)}, not {pooler!r}")
    _declared[libpq_url(url)] = pooler


def pooler_of(url: str) -> Pooler:
    return _declared.get(libpq_url(url), "none")


def timeouts(statement_timeout_ms: int) -> dict[str, str]:
    """The per-connection timeouts of a service (idle in a transaction: twice the statement's)."""
    return {
        "statement_timeout": str(statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(statement_timeout_ms * 2),
    }


class TransactionPooled(asyncpg.Connection):
    """A connection behind transaction pooling: releasing it to its pool sends nothing (module doc)."""

    def get_reset_query(self) -> str:
        return ""  # open transactions are still rolled back by the pool (asyncpg's reset)


def connect_options(
    url: str, application_name: str, *, role: str | None = None, settings: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`asyncpg.connect` / `create_pool` keyword arguments for a connection to `url` (module doc)."""
    pooler = pooler_of(url)
    wanted = {"application_name": application_name, **(settings or {})}
    if role:
        wanted["role"] = role
    if pooler == "none":
        return {"server_settings": wanted}
    if "role" in wanted:
        raise PoolerRefused(
            f"a role switch ({wanted['role']!r}) cannot be sent through PgBouncer (DB_POOLER={pooler}): "
            "it refuses the `role` startup parameter, and ignoring it would run the service as its login; "
            "leave VOUCHERS_DB_ROLE empty (each service logs in as its own role)"
        )
    options: dict[str, Any] = {"server_settings": {k: v for k, v in wanted.items() if k in TRACKED}}
    if pooler == "transaction":
        options |= {"statement_cache_size": 0, "connection_class": TransactionPooled}
    return options


async def check_login_defaults(url: str, statement_timeout_ms: int) -> dict[str, str]:
    """Behind a pooler: the login's own timeouts are in force, or the service refuses to start."""
    pooler = pooler_of(url)
    connection = await asyncpg.connect(libpq_url(url), timeout=10, **connect_options(url, "startup-check"))
    try:
        row = await connection.fetchrow(
            "SELECT current_user AS login, current_setting('statement_timeout') AS statement_timeout, "
            "current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction_session_timeout"
        )
    finally:
        await connection.close()
    assert row is not None
    found = {name: str(row[name]) for name in TIMEOUTS}
    missing = [name for name, value in found.items() if value == "0"]
    if missing:
        raise PoolerRefused(
            f"DB_POOLER={pooler}: the login {row['login']} has no {' or '.join(missing)} of its own, and "
            "PgBouncer does not pass them as startup parameters; set them as the role's defaults "
            f"(ALTER ROLE {row['login']} SET statement_timeout = '{statement_timeout_ms}ms', … : "
            "shared.dbroles.ensure_logins does it; docs/operations.md, PgBouncer)"
        )
    wanted = timeouts(statement_timeout_ms)
    if found["statement_timeout"] != _pg_duration(int(wanted["statement_timeout"])):
        logger.warning(
            "DB_POOLER=%s: the login %s's statement_timeout is %s (DB_STATEMENT_TIMEOUT_MS asks %s ms): "
            "behind a pooler the login's default applies",
            pooler,
            row["login"],
            found["statement_timeout"],
            statement_timeout_ms,
        )
    return found


def _pg_duration(ms: int) -> str:
    """How `current_setting` shows a duration in milliseconds (30000 → '30s', 1500 → '1500ms')."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
