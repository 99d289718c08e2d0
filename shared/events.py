"""Events for integrators: an outbox per service, an ordered change feed and signed webhooks.

**Outbox.** Every state change writes one row to `<schema>.outbox` with `emit()`, in the
same transaction as the change (an `AsyncSession`, an SQLAlchemy connection or a raw
asyncpg connection; the vouchers ledger's SQL functions insert theirs themselves). A
change that rolls back leaves no event; an event never exists without its change.

**Order and watermark** (as the ledger's sealer, `services/vouchers/chain.py`). Rows are
ordered by (transaction id, id), and only rows whose transaction id is below
`pg_snapshot_xmin(pg_current_snapshot())` are ever served: every transaction below it
has ended, and every later one gets a larger id, so nothing can later appear before a
position once served. A reader that resumes after a position (`?after=<cursor>`, or a
webhook subscription's stored position) therefore misses nothing and sees nothing twice.
The price is latency: a write transaction still open anywhere on the PostgreSQL server
holds the feed back until it ends (lag, never a gap).

**Change feed.** `GET /v1/events?after=&limit=&types=` (platform, auditor, admin): the
next page and a `next_cursor` to continue from; with a type filter the cursor also moves
past events that do not match, so a poller never rescans them.

**Webhooks.** A client subscribes a URL to event types (`POST /v1/webhooks`); the secret
it gets back once signs every delivery: `Longgang-Signature: t=<unix seconds>,v1=<hex
HMAC-SHA256(secret, "<t>.<raw body>")>`. Applicant and vendor clients only receive
events about their own organisation (`organisation` / `vendor` of the event). A
dispatcher in each process serves subscriptions one event at a time, in feed order:
a 2xx moves the subscription on; anything else (or no answer within the timeout) is
logged and retried with exponential backoff and jitter, the same event first, for
`retry_for_seconds` (24 h by default); after that the subscription is suspended, not
skipped ahead, and `POST /v1/webhooks/{id}/resume` continues where it stopped. Two
processes share the work safely: a subscription is claimed with `FOR UPDATE SKIP LOCKED`
in a short transaction and held by a lease (a token and an expiry) while its events are
sent, so no transaction stays open during an outbound call (an open transaction would
hold the watermark back for everyone). Delivery is at least once: a receiver dedupes by
the event id. See docs/webhooks.md.
"""

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import asyncpg
import httpx
import pydantic_core
from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.auth import ADMIN, APPLICANT, AUDITOR, PLATFORM, VENDOR, Principal, require
from shared.db import SessionDep
from shared.errors import ErrorCode, FieldError, ProblemError, validation_problem
from shared.migrations import append_only_sql
from shared.pagination import decode_cursor, decode_cursor_keys, encode_cursor

logger = logging.getLogger("shared.events")

# --- the catalogue -------------------------------------------------------------------------------

REGISTRY_ENTITIES = ("organisation", "revenue", "affiliation", "vendor", "model", "filing", "recognition")

EVENT_TYPES: dict[str, str] = {
    **{
        f"registry.{entity}.{change}": f"A registry {entity} was {'recorded' if change == 'created' else 'changed'}"
        for entity in REGISTRY_ENTITIES
        for change in ("created", "changed")
    },
    "eligibility.application.submitted": "An application was submitted",
    "eligibility.application.decided": "The automatic decision on a submitted application (outcome, amount)",
    "eligibility.application.reviewed": "An officer reviewed an application",
    "eligibility.application.approved": "An approver approved an application: its decision may be claimed",
    "eligibility.application.rejected": "An approver rejected an application",
    "eligibility.application.a1_decided": "An approver decided an application case by case (A1); it is approved",
    "eligibility.parameter.versioned": "An administrator added a future version of a policy parameter",
    "vouchers.voucher.issued": "A compute (M1) or model (M3) voucher was issued",
    "vouchers.voucher.redeemed": "A vendor redeemed part or all of a voucher",
    "vouchers.voucher.held": "A vendor reserved an amount of a voucher (a hold)",
    "vouchers.hold.captured": "A hold was captured: it became a redemption",
    "vouchers.hold.released": "A vendor released a hold: the amount is available again",
    "vouchers.hold.expired": "A hold expired unused: the amount is available again",
    "vouchers.voucher.voided": "A voucher was voided; its unused amount returned to the budget",
    "vouchers.voucher.expired": "A voucher passed its date; its unused amount returned to the budget",
    "vouchers.grant.disbursed": "A grant (M2, M4–M13) was disbursed",
    "vouchers.grant.reversed": "A mistaken grant was reversed",
    "vouchers.settlement_batch.created": "A vendor's captured redemptions were gathered into a settlement batch",
    "vouchers.settlement_batch.closed": "A settlement batch was closed and settled",
    "vouchers.ledger.checkpoint": "An auditor published the ledger's head for a day, signed with the service's key",
}

SERVICE_SCHEMAS = ("registry", "eligibility", "vouchers")


def service_types(service: str) -> list[str]:
    return [name for name in EVENT_TYPES if name.startswith(service + ".")]


def _schema_of(event_type: str) -> str:
    schema = event_type.split(".", 1)[0]
    if schema not in SERVICE_SCHEMAS or event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r} (add it to shared.events.EVENT_TYPES)")
    return schema


def type_matches(patterns: Sequence[str], event_type: str) -> bool:
    """No patterns: everything. A pattern is a type, or a prefix ending in `.*` (`vouchers.hold.*`)."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern.endswith(".*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif pattern == event_type:
            return True
    return False


# --- migrations ---------------------------------------------------------------------------------


def events_tables_sql(schema: str, grant_to: str | None = None) -> list[str]:
    """Statements creating `<schema>.outbox`, `webhook_subscriptions` and `webhook_deliveries`."""
    s = f'"{schema}"'
    statements = [
        f"""
        CREATE TABLE {s}.outbox (
            id bigserial PRIMARY KEY,
            txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            type text NOT NULL CHECK (type ~ '^[a-z0-9_]+(\\.[a-z0-9_]+)+$'),
            subject text NOT NULL,
            organisation text,
            vendor text,
            payload jsonb NOT NULL DEFAULT '{{}}'
        )
        """,
        f"CREATE INDEX ix_outbox_txid_id ON {s}.outbox (txid, id)",
        *append_only_sql(schema, "outbox"),
        f"""
        CREATE TABLE {s}.webhook_subscriptions (
            id bigserial PRIMARY KEY,
            client_id text NOT NULL,
            created_by text NOT NULL,
            url text NOT NULL CHECK (url ~* '^https?://'),
            description text,
            event_types text[] NOT NULL DEFAULT '{{}}',
            all_objects boolean NOT NULL,
            vendor text,
            organisation text,
            secret text NOT NULL,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deactivated')),
            cursor_txid xid8 NOT NULL DEFAULT '0',
            cursor_id bigint NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            attempts integer NOT NULL DEFAULT 0,
            failing_since timestamptz,
            last_error text,
            lease_token uuid,
            lease_until timestamptz,
            suspended_at timestamptz,
            deactivated_at timestamptz,
            idempotency_key text,
            request_hash text,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CHECK (all_objects OR vendor IS NOT NULL OR organisation IS NOT NULL),
            UNIQUE (client_id, idempotency_key)
        )
        """,
        f"CREATE INDEX ix_webhook_subscriptions_due ON {s}.webhook_subscriptions (next_attempt_at, id) "
        "WHERE status = 'active'",
        f"CREATE INDEX ix_webhook_subscriptions_client ON {s}.webhook_subscriptions (client_id, id)",
        f"""
        CREATE TABLE {s}.webhook_deliveries (
            id bigserial PRIMARY KEY,
            subscription_id bigint NOT NULL REFERENCES {s}.webhook_subscriptions (id),
            event_id bigint NOT NULL,
            event_type text NOT NULL,
            attempt integer NOT NULL,
            manual boolean NOT NULL DEFAULT false,
            delivered boolean NOT NULL,
            status_code integer,
            error text,
            duration_ms integer NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """,
        f"CREATE INDEX ix_webhook_deliveries_subscription ON {s}.webhook_deliveries (subscription_id, id)",
        *append_only_sql(schema, "webhook_deliveries"),
    ]
    if grant_to:
        statements += [
            f"GRANT SELECT, INSERT ON {s}.outbox, {s}.webhook_deliveries TO {grant_to}",
            f"GRANT SELECT, INSERT, UPDATE ON {s}.webhook_subscriptions TO {grant_to}",
            f"GRANT USAGE ON SEQUENCE {s}.outbox_id_seq, {s}.webhook_subscriptions_id_seq, "
            f"{s}.webhook_deliveries_id_seq TO {grant_to}",
        ]
    return statements


def drop_events_tables_sql(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"DROP TABLE {s}.webhook_deliveries",
        f"DROP TABLE {s}.webhook_subscriptions",
        f"DROP TABLE {s}.outbox",
        f"DROP FUNCTION {s}.refuse_change_webhook_deliveries()",
        f"DROP FUNCTION {s}.refuse_change_outbox()",
    ]


# --- writing events -------------------------------------------------------------------------------


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


async def emit_many(target: AsyncSession | AsyncConnection | Any, events: Sequence[NewEvent]) -> None:
    """Write events in the caller's transaction, in the given order (one statement)."""
    if not events:
        return
    schemas = {_schema_of(event.type) for event in events}
    if len(schemas) != 1:
        raise ValueError(f"events of one service at a time, not {sorted(schemas)}")
    schema = schemas.pop()
    columns = (
        [event.type for event in events],
        [event.subject for event in events],
        [event.organisation for event in events],
        [event.vendor for event in events],
        [_json(event.payload) for event in events],
    )
    if isinstance(target, AsyncSession | AsyncConnection):
        await target.execute(
            text(
                f'INSERT INTO "{schema}".outbox (type, subject, organisation, vendor, payload) '
                "SELECT t, s, o, v, p::jsonb FROM unnest(CAST(:t AS text[]), CAST(:s AS text[]), "
                "CAST(:o AS text[]), CAST(:v AS text[]), CAST(:p AS text[])) WITH ORDINALITY AS e(t, s, o, v, p, n) "
                "ORDER BY n"
            ),
            dict(zip("tsovp", columns, strict=True)),
        )
    else:  # an asyncpg connection (or pool connection proxy)
        await target.execute(
            f'INSERT INTO "{schema}".outbox (type, subject, organisation, vendor, payload) '
            "SELECT t, s, o, v, p::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
            "WITH ORDINALITY AS e(t, s, o, v, p, n) ORDER BY n",
            *columns,
        )


# --- signatures and backoff (pure) ------------------------------------------------------------------

SIGNATURE_HEADER = "Longgang-Signature"
EVENT_ID_HEADER = "Longgang-Event-Id"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` under the subscription's secret."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if `header` signs `body` with `secret` and its timestamp is within the tolerance."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def backoff_delay(attempt: int, base: float, cap: float, fraction: float) -> float:
    """Seconds to wait after the `attempt`-th failure in a row: exponential, capped, jittered.

    The ceiling is `min(cap, base · 2^(attempt-1))`; the delay is between half of it and
    all of it (`fraction` in [0, 1) picks where), so retries of many subscriptions spread out.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 60))
    return ceiling / 2 + ceiling / 2 * min(max(fraction, 0.0), 1.0)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def event_id(schema: str, row_id: int) -> str:
    """Event ids are unique across the three services: `vouchers-42`."""
    return f"{schema}-{row_id}"


def envelope(schema: str, row: Mapping[str, Any]) -> bytes:
    """The body of a delivery: `{id, type, occurred_at, subject, data}` as compact UTF-8 JSON."""
    payload = row["payload"]
    data = json.loads(payload) if isinstance(payload, str) else payload
    occurred: datetime = row["occurred_at"]
    document = {
        "id": event_id(schema, int(row["id"])),
        "type": row["type"],
        "occurred_at": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": row["subject"],
        "data": data,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- settings -----------------------------------------------------------------------------------


class WebhookSettings(BaseSettings):
    """`WEBHOOK_*` environment variables, the same for the three services."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_", extra="ignore", frozen=True)

    backoff_base_seconds: float = Field(default=5.0, gt=0, description="First retry after about this long")
    backoff_cap_seconds: float = Field(default=600.0, gt=0, description="Retries at least this often")
    retry_for_seconds: float = Field(
        default=24 * 3600, ge=0, description="How long an event is retried before the subscription is suspended"
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Per delivery (connect to last byte)")
    poll_seconds: float = Field(default=1.0, ge=0, description="How often the dispatcher looks for work (0: off)")
    concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Subscriptions served at once per process, each in its own task (a slow receiver holds one)",
    )
    batch: int = Field(default=100, ge=1, le=1000, description="Events sent to one subscription per claim")
    max_per_client: int = Field(default=25, ge=1, description="Subscriptions a client may have (not deactivated)")
    allow_private_networks: bool = Field(
        default=False,
        description="Deliver to loopback, private and link-local addresses too (local development and tests only: "
        "otherwise a subscriber could make the service call its internal network)",
    )


#: IPv6 forms that carry an IPv4 address: a forbidden IPv4 address is forbidden in any of them
#: (Python's `is_global` says yes to `64:ff9b::7f00:1`, loopback through NAT64).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, the well-known prefix: the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, local-use: never a delivery address
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated `::a.b.c.d` (and `::`, `::1`): never
_TEREDO = ipaddress.IPv6Network("2001::/32")  # the client's IPv4 address is hidden in it: never

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: Address) -> bool:
    """True only for a unicast address on the public internet, whatever IPv6 form wraps an IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL or address in _TEREDO or address in _IPV4_COMPATIBLE:
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:  # reaches that IPv4 address: it decides
            return is_public_address(embedded)
    return bool(
        address.is_global
        and not (address.is_multicast or address.is_reserved or address.is_unspecified or address.is_loopback)
        and not address.is_link_local
    )


def _parse_address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%", 1)[0])


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now (an IP literal is itself); raises OSError if none."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def address_allowed(url: str, allow_private: bool, resolver: Resolver = resolve_host) -> bool:
    """False if the URL's host is or resolves to a non-public address (loopback, private, link-local…)."""
    if allow_private:
        return True
    parts = urlsplit(url)
    try:
        addresses = await resolver(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError, ValueError):
        return True  # does not resolve (now): the delivery fails, and is retried
    return all(is_public_address(_parse_address(address)) for address in addresses)


class AddressRefused(Exception):
    """The URL's host is (or resolves to) an address a webhook must not reach."""


@dataclass(frozen=True)
class PinnedRequest:
    """A delivery's URL with the host replaced by the checked address, and what keeps the name for HTTP and TLS."""

    url: str
    host_header: str
    sni_hostname: str | None
    address: str


async def pin(url: str, allow_private: bool, resolver: Resolver = resolve_host) -> PinnedRequest:
    """Resolve the URL's host once, check every address, and name the one to connect to.

    The delivery connects to that address (the `Host` header and TLS's SNI and certificate
    check keep the name): a name cannot resolve to a public address for the check and to an
    internal one for the connection (DNS rebinding).
    """
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")  # IDNA-encoded: what DNS, `Host` and SNI carry
    port = target.port or (443 if target.scheme == "https" else 80)
    addresses = await resolver(host, port)  # OSError: does not resolve (now)
    if not addresses:
        raise OSError(f"{host} does not resolve")
    parsed = [_parse_address(address) for address in addresses]
    if not allow_private and not all(is_public_address(address) for address in parsed):
        raise AddressRefused(host)
    chosen = parsed[0]
    literal = host.strip("[]")
    try:
        is_literal = _parse_address(literal) == chosen
    except ValueError:
        is_literal = False
    return PinnedRequest(
        url=str(target.copy_with(host=str(chosen))),
        host_header=target.netloc.decode("ascii"),
        sni_hostname=None if is_literal or target.scheme != "https" else host,
        address=str(chosen),
    )


# --- the dispatcher ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def subscription_matches(subscription: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Type filter and object filter: applicants and vendors get only events about themselves."""
    if not type_matches(list(subscription["event_types"] or ()), str(event["type"])):
        return False
    if subscription["all_objects"]:
        return True
    vendor, organisation = subscription["vendor"], subscription["organisation"]
    return bool((vendor and event["vendor"] == vendor) or (organisation and event["organisation"] == organisation))


class Dispatcher:
    """Sends each subscription's events in feed order, one at a time, with retries (see module doc).

    Each claimed subscription is served by its own task, and the loop claims more as soon as
    a slot is free: it never waits for a group, so a receiver that hangs holds one slot for
    one timeout, and others' deliveries go on (issue #12). Subscriptions that are failing
    get at most half of the slots, so many broken receivers cannot take them all.
    """

    def __init__(self, dsn: str, schema: str, settings: WebhookSettings, *, role: str | None = None) -> None:
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self.schema = schema
        self.settings = settings
        self.role = role
        self.random: Callable[[], float] = random.random
        self._pool: asyncpg.Pool | None = None
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._token = uuid.uuid4()  # this process's leases
        self._serving: dict[int, tuple[asyncio.Task[int], bool]] = {}  # subscription → (task, was failing)
        self.resolver: Resolver = resolve_host
        s = f'"{schema}"'
        self.lease_seconds = settings.timeout_seconds * 2 + 30
        self._claim_sql = f"""
            WITH due AS (
                SELECT w.id FROM {s}.webhook_subscriptions w
                WHERE w.status = 'active' AND w.next_attempt_at <= clock_timestamp()
                  AND (w.lease_until IS NULL OR w.lease_until < clock_timestamp())
                  AND (w.attempts > 0) = $4 AND w.id <> ALL($5::bigint[])
                  AND EXISTS (SELECT 1 FROM {s}.outbox o
                              WHERE o.txid < pg_snapshot_xmin(pg_current_snapshot())
                                AND (o.txid, o.id) > (w.cursor_txid, w.cursor_id))
                ORDER BY w.next_attempt_at, w.id
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {s}.webhook_subscriptions w
               SET lease_token = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
              FROM due WHERE w.id = due.id
            RETURNING w.id, w.url, w.secret, w.event_types, w.all_objects, w.vendor, w.organisation,
                      w.cursor_txid, w.cursor_id, w.attempts
        """
        self._window_sql = f"""
            SELECT id, txid, occurred_at, type, subject, organisation, vendor, payload::text AS payload
            FROM {s}.outbox
            WHERE txid < pg_snapshot_xmin(pg_current_snapshot()) AND (txid, id) > ($1::xid8, $2)
            ORDER BY txid, id LIMIT $3
        """
        log = f"""
            INSERT INTO {s}.webhook_deliveries
                (subscription_id, event_id, event_type, attempt, manual, delivered, status_code, error, duration_ms)
            VALUES ($1, $3, $4, $5, false, $6, $7, $8, $9)
        """
        self._success_sql = f"""
            WITH logged AS ({log})
            UPDATE {s}.webhook_subscriptions
               SET cursor_txid = $10, cursor_id = $3, attempts = 0, failing_since = NULL, last_error = NULL,
                   lease_until = clock_timestamp() + make_interval(secs => $11), updated_at = clock_timestamp()
             WHERE id = $1 AND lease_token = $2
            RETURNING status
        """
        suspend = "status = 'active' AND coalesce(failing_since, clock_timestamp()) <= clock_timestamp() - " + (
            "make_interval(secs => $14)"
        )
        self._failure_sql = f"""
            WITH logged AS ({log})
            UPDATE {s}.webhook_subscriptions
               SET cursor_txid = $10, cursor_id = $11,
                   attempts = attempts + 1,
                   failing_since = coalesce(failing_since, clock_timestamp()),
                   last_error = $12,
                   next_attempt_at = clock_timestamp() + make_interval(secs => $13),
                   status = CASE WHEN {suspend} THEN 'suspended' ELSE status END,
                   suspended_at = CASE WHEN {suspend} THEN clock_timestamp() ELSE suspended_at END,
                   lease_token = NULL, lease_until = NULL, updated_at = clock_timestamp()
             WHERE id = $1 AND lease_token = $2
        """
        self._unlease_sql = f"""
            UPDATE {s}.webhook_subscriptions SET lease_token = NULL, lease_until = NULL WHERE lease_token = $1
        """
        self._release_sql = f"""
            UPDATE {s}.webhook_subscriptions
               SET cursor_txid = $3, cursor_id = $4, lease_token = NULL, lease_until = NULL
             WHERE id = $1 AND lease_token = $2
        """

    # lifecycle

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds), follow_redirects=False, trust_env=False
            )
        return self._http

    async def start(self) -> None:
        if self.settings.poll_seconds > 0:
            self._task = asyncio.create_task(self._loop(), name=f"webhooks-{self.schema}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        serving = [task for task, _ in self._serving.values()]
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        self._serving.clear()
        if self._pool is not None:
            # hand back what this process was serving: another process continues at once (not after the lease)
            with contextlib.suppress(Exception):
                await self._pool.execute(self._unlease_sql, self._token)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def wake(self) -> None:
        self._wake.set()

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            server_settings = {"application_name": f"{self.schema}-webhooks"}
            if self.role:
                server_settings["role"] = self.role
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=min(self.settings.concurrency, 4) + 1,  # short statements only
                server_settings=server_settings,
                command_timeout=30,
            )
        return self._pool

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away, a bug: log, wait, try again
                logger.warning("webhook dispatcher: %s: %s", type(exc).__name__, exc)
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
                self._wake.clear()

    # work

    async def run_once(self) -> int:
        """Claim due subscriptions with events waiting for the free slots, each served by its own task; how many."""
        free = self.settings.concurrency - len(self._serving)
        if free <= 0:
            return 0
        pool = await self._ensure_pool()
        busy = list(self._serving)
        claimed = list(await pool.fetch(self._claim_sql, free, self._token, self.lease_seconds, False, busy))
        failing_slots = max(1, self.settings.concurrency // 2) - sum(1 for _, f in self._serving.values() if f)
        room = min(free - len(claimed), failing_slots)
        if room > 0:
            claimed += await pool.fetch(self._claim_sql, room, self._token, self.lease_seconds, True, busy)
        for row in claimed:
            sub_id = int(row["id"])
            task = asyncio.create_task(self._serve_logged(pool, row, self._token), name=f"webhook-{sub_id}")
            self._serving[sub_id] = (task, int(row["attempts"]) > 0)
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[int]) -> None:
        for sub_id, (serving, _) in list(self._serving.items()):
            if serving is task:
                del self._serving[sub_id]
        self._wake.set()  # a slot is free

    async def _serve_logged(self, pool: asyncpg.Pool, subscription: Mapping[str, Any], token: uuid.UUID) -> int:
        try:
            return await self._serve(pool, subscription, token)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out and another round (or process) takes it up
            logger.warning("webhook %s: %s: %s", subscription["id"], type(exc).__name__, exc)
            return 0

    async def _serve(self, pool: asyncpg.Pool, subscription: Mapping[str, Any], token: uuid.UUID) -> int:
        """Send this subscription's waiting events in order until one fails or the batch is done."""
        sub_id = subscription["id"]
        cursor = (int(subscription["cursor_txid"]), int(subscription["cursor_id"]))
        attempts = int(subscription["attempts"])
        sent = windows = 0
        # a bounded amount of work per claim (events sent, windows read), then the lease is released
        while sent < self.settings.batch and windows < 20:
            windows += 1
            window = await pool.fetch(self._window_sql, cursor[0], cursor[1], self.settings.batch)
            if not window:
                break
            for event in window:
                if not subscription_matches(subscription, event):
                    cursor = (int(event["txid"]), int(event["id"]))
                    continue
                result = await self.send(subscription["url"], subscription["secret"], event, attempts + 1)
                common: tuple[Any, ...] = (
                    sub_id,
                    token,
                    event["id"],
                    event["type"],
                    attempts + 1,
                    result.delivered,
                    result.status_code,
                    result.error,
                    result.duration_ms,
                )
                if not result.delivered:
                    delay = backoff_delay(
                        attempts + 1,
                        self.settings.backoff_base_seconds,
                        self.settings.backoff_cap_seconds,
                        self.random(),
                    )
                    await pool.execute(
                        self._failure_sql,
                        *common,
                        cursor[0],
                        cursor[1],
                        result.error,
                        delay,
                        self.settings.retry_for_seconds,
                    )
                    return sent
                sent += 1
                attempts = 0
                cursor = (int(event["txid"]), int(event["id"]))
                status = await pool.fetchval(self._success_sql, *common, cursor[0], self.lease_seconds)
                if status != "active":  # lease lost, or deactivated meanwhile
                    return sent
                if sent >= self.settings.batch:
                    break
        await pool.execute(self._release_sql, sub_id, token, cursor[0], cursor[1])
        return sent

    async def send(self, url: str, secret: str, event: Mapping[str, Any], attempt: int) -> DeliveryResult:
        """One signed POST of one event to the address checked for it; never raises for the receiver's failures."""
        body = envelope(self.schema, event)
        started = time.perf_counter()
        try:
            target = await asyncio.wait_for(
                pin(url, self.settings.allow_private_networks, self.resolver), self.settings.timeout_seconds
            )
        except AddressRefused:
            return DeliveryResult(False, None, "the URL's host is not a public address (not sent)", 0)
        except (OSError, UnicodeError, ValueError, httpx.InvalidURL) as exc:  # TimeoutError is an OSError
            elapsed = int((time.perf_counter() - started) * 1000)
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500], elapsed)
        timestamp = int(time.time())
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "longgang-ai-webhooks/1",
            EVENT_ID_HEADER: event_id(self.schema, int(event["id"])),
            "Longgang-Event-Type": str(event["type"]),
            "Longgang-Delivery-Attempt": str(attempt),
            SIGNATURE_HEADER: signature_header(secret, timestamp, body),
        }
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        try:
            async with self.http.stream(
                "POST", target.url, content=body, headers=headers, extensions=extensions
            ) as response:
                status = response.status_code  # the body is not read: a receiver's answer is its status
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            elapsed = int((time.perf_counter() - started) * 1000)
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500], elapsed)
        elapsed = int((time.perf_counter() - started) * 1000)
        if 200 <= status < 300:
            return DeliveryResult(True, status, None, elapsed)
        return DeliveryResult(False, status, f"HTTP {status}", elapsed)


def settings_of(app: FastAPI) -> WebhookSettings:
    """The running dispatcher's settings, else `app.state.webhook_settings` (tests), else the environment."""
    dispatcher: Dispatcher | None = getattr(app.state, "dispatcher", None)
    if dispatcher is not None:
        return dispatcher.settings
    configured: WebhookSettings | None = getattr(app.state, "webhook_settings", None)
    return configured or WebhookSettings()


async def start_dispatcher(app: FastAPI) -> None:
    """Start-up hook: `app.state.webhook_settings` (tests) or the `WEBHOOK_*` environment."""
    settings = settings_of(app)
    service_settings = app.state.settings
    dispatcher = Dispatcher(
        service_settings.async_database_url,
        app.state.schema,
        settings,
        role=getattr(service_settings, "db_role", None),
    )
    app.state.dispatcher = dispatcher
    await dispatcher.start()


async def stop_dispatcher(app: FastAPI) -> None:
    dispatcher: Dispatcher | None = getattr(app.state, "dispatcher", None)
    if dispatcher is not None:
        await dispatcher.stop()


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


# --- HTTP: the change feed and webhook subscriptions ------------------------------------------------

WEBHOOK_NOT_FOUND = ErrorCode(
    "webhook_not_found", 404, "Webhook 订阅不存在：{id}", "No such webhook subscription: {id}"
)
WEBHOOK_DELIVERY_NOT_FOUND = ErrorCode(
    "webhook_delivery_not_found", 404, "投递记录不存在：{id}", "No such webhook delivery: {id}"
)
WEBHOOK_DEACTIVATED = ErrorCode(
    "webhook_deactivated", 409, "Webhook 订阅 {id} 已停用", "Webhook subscription {id} is deactivated"
)
WEBHOOK_LIMIT = ErrorCode(
    "webhook_limit",
    409,
    "每个客户端最多 {limit} 个 Webhook 订阅",
    "A client may have at most {limit} webhook subscriptions",
)
IDEMPOTENCY_KEY_REUSED = ErrorCode(
    "idempotency_key_reused",
    409,
    "该幂等键已用于另一个请求：{key}",
    "This Idempotency-Key was used for a different request: {key}",
)

FEED_ROLES = (PLATFORM, AUDITOR, ADMIN)
WEBHOOK_ROLES = (PLATFORM, ADMIN, AUDITOR, APPLICANT, VENDOR)

SubscriptionStatus = Literal["active", "suspended", "deactivated"]


class EventRead(BaseModel):
    id: str = Field(description="Unique across the three services, e.g. `vouchers-42`")
    type: str
    occurred_at: datetime
    subject: str = Field(description="What changed: a voucher code, an application id, a registry key")
    organisation: str | None = Field(description="The organisation (credit code) the event is about")
    vendor: str | None = Field(description="The vendor (credit code) the event is about")
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str = Field(description="Pass as `after` to continue; stays put while nothing new has committed")
    has_more: bool = Field(description="True if the next page is already waiting")


class EventType(BaseModel):
    type: str
    description: str


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(max_length=2000, description="http(s) URL that receives a POST per event")
    event_types: list[Annotated[str, Field(min_length=3, max_length=100)]] = Field(
        default_factory=list,
        max_length=50,
        description="Types (or prefixes ending in `.*`); empty: every type of this service",
    )
    description: str | None = Field(default=None, max_length=200)
    after: str | None = Field(
        default=None,
        max_length=512,
        description="Start after this change-feed cursor, or `beginning`; default: events from now on",
    )


class ObjectFilter(BaseModel):
    all_objects: bool = Field(description="Bureau clients: events about every organisation")
    vendor: str | None = Field(description="Vendor clients: events whose vendor is this one")
    organisation: str | None = Field(description="Applicant clients: events about this organisation")


class WebhookRead(BaseModel):
    id: int
    url: str
    description: str | None
    event_types: list[str]
    status: SubscriptionStatus
    client_id: str
    created_by: str
    filter: ObjectFilter
    delivered_up_to: str = Field(description="Change-feed cursor of the last event passed (delivered or filtered)")
    next_attempt_at: datetime
    attempts: int = Field(description="Failed attempts in a row at the current event")
    failing_since: datetime | None
    last_error: str | None
    suspended_at: datetime | None
    deactivated_at: datetime | None
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="Signs every delivery (Longgang-Signature); shown only here")


class WebhookPage(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None


class DeliveryRead(BaseModel):
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    attempt: int
    manual: bool
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryRead] = Field(description="Newest first")
    next_cursor: str | None


_SUBSCRIPTION_COLUMNS = (
    "id, client_id, created_by, url, description, event_types, all_objects, vendor, organisation, status, "
    "cursor_txid::text::bigint AS cursor_txid, cursor_id, next_attempt_at, attempts, failing_since, last_error, "
    "suspended_at, deactivated_at, created_at"
)
_DELIVERY_COLUMNS = (
    "id, subscription_id, event_id, event_type, attempt, manual, delivered, status_code, error, duration_ms, at"
)
_EVENT_COLUMNS = "id, txid::text::bigint AS txid, occurred_at, type, subject, organisation, vendor, payload"


def _validate_types(service: str, patterns: Iterable[str], field: str) -> list[str]:
    known = service_types(service)
    problems: list[FieldError] = []
    result: list[str] = []
    for index, pattern in enumerate(patterns):
        ok = pattern in known or (
            pattern.endswith(".*") and any(name.startswith(pattern[:-1]) for name in known) and len(pattern) > 2
        )
        if not ok:
            problems.append(
                FieldError(
                    f"{field}.{index}" if field.startswith("body") else field,
                    "unknown_event_type",
                    f"未知的事件类型：{pattern}（见 GET /v1/events/types）",
                    f"Unknown event type: {pattern} (see GET /v1/events/types)",
                    {"value": pattern},
                )
            )
        elif pattern not in result:
            result.append(pattern)
    if problems:
        raise validation_problem(problems)
    return result


_PRIVATE_ADDRESS = FieldError(
    "body.url",
    "url_not_allowed",
    "Webhook 地址必须是公网地址（不能是本机、内网或链路本地地址）",
    "A webhook URL must point to a public address (not loopback, private or link-local)",
)


def _check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a bad port raises
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
        raise validation_problem(
            [
                FieldError(
                    "body.url",
                    "url_not_allowed",
                    "Webhook 地址必须是 http(s) URL",
                    "A webhook URL must be an http(s) URL with a host",
                )
            ]
        )
    return url


def _feed_listing(service: str) -> str:
    return f"{service}-events"


def _feed_cursor(service: str, position: tuple[int, int]) -> str:
    return encode_cursor(_feed_listing(service), list(position))


def _event_read(service: str, row: Mapping[str, Any]) -> EventRead:
    payload = row["payload"]
    return EventRead(
        id=event_id(service, int(row["id"])),
        type=row["type"],
        occurred_at=row["occurred_at"],
        subject=row["subject"],
        organisation=row["organisation"],
        vendor=row["vendor"],
        data=json.loads(payload) if isinstance(payload, str) else dict(payload),
    )


def _webhook_read(service: str, row: Mapping[str, Any]) -> WebhookRead:
    return WebhookRead(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        event_types=list(row["event_types"] or []),
        status=row["status"],
        client_id=row["client_id"],
        created_by=row["created_by"],
        filter=ObjectFilter(all_objects=row["all_objects"], vendor=row["vendor"], organisation=row["organisation"]),
        delivered_up_to=_feed_cursor(service, (int(row["cursor_txid"]), int(row["cursor_id"]))),
        next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"],
        failing_since=row["failing_since"],
        last_error=row["last_error"],
        suspended_at=row["suspended_at"],
        deactivated_at=row["deactivated_at"],
        created_at=row["created_at"],
    )


def _delivery_read(service: str, row: Mapping[str, Any]) -> DeliveryRead:
    return DeliveryRead(**{**dict(row), "event_id": event_id(service, int(row["event_id"]))})


def _request_hash(payload: WebhookCreate) -> str:
    canonical = json.dumps(payload.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


WATERMARK_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


async def _rows(session: AsyncSession, sql: str, **args: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in (await session.execute(text(sql), args)).mappings()]


async def _first(session: AsyncSession, sql: str, **args: Any) -> dict[str, Any] | None:
    row = (await session.execute(text(sql), args)).mappings().first()
    return None if row is None else dict(row)


async def _scalar(session: AsyncSession, sql: str, **args: Any) -> Any:
    return (await session.execute(text(sql), args)).scalar_one()


def _position(row: Mapping[str, Any]) -> tuple[int, int]:
    return int(row["txid"]), int(row["id"])


def events_router(service: str, *, webhook_roles: Sequence[str] = WEBHOOK_ROLES) -> APIRouter:
    """`GET /v1/events` and the `/v1/webhooks` endpoints of one service (schema = service name)."""
    s = f'"{service}"'
    listing = _feed_listing(service)
    tail_sql = (
        f"SELECT txid::text::bigint AS txid, id FROM {s}.outbox "
        "WHERE txid < CAST(:watermark AS xid8) ORDER BY txid DESC, id DESC LIMIT 1"
    )
    by_key_sql = (
        f"SELECT {_SUBSCRIPTION_COLUMNS}, secret, request_hash FROM {s}.webhook_subscriptions "
        "WHERE client_id = :client AND idempotency_key = :key"
    )
    router = APIRouter(tags=["events"])
    caller = require(*webhook_roles)

    def _whose(principal: Principal) -> tuple[str, dict[str, Any]]:
        """Administrators manage every subscription (e.g. a revoked client's); others only their own."""
        if principal.has(ADMIN):
            return "TRUE", {}
        return "client_id = :client", {"client": principal.client_id}

    async def _subscription(session: AsyncSession, principal: Principal, webhook_id: int) -> dict[str, Any]:
        clause, args = _whose(principal)
        sql = f"SELECT {_SUBSCRIPTION_COLUMNS}, secret FROM {s}.webhook_subscriptions WHERE id = :id AND {clause}"
        row = await _first(session, sql, id=webhook_id, **args)
        if row is None:
            raise ProblemError(WEBHOOK_NOT_FOUND, id=webhook_id)
        return row

    @router.get(
        "/v1/events",
        response_model=EventPage,
        summary="The change feed: events in commit-safe order, resumable with `after` (no loss, no duplicates)",
    )
    async def feed(
        session: SessionDep,
        _: Annotated[Principal, require(*FEED_ROLES)],
        after: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        types: Annotated[
            str | None, Query(max_length=2000, description="Comma-separated types or prefixes (`vouchers.hold.*`)")
        ] = None,
    ) -> EventPage:
        keys = decode_cursor_keys(listing, after, 2) if after else (0, 0)
        position = (keys[0], keys[1])
        patterns = _validate_types(service, [t.strip() for t in (types or "").split(",") if t.strip()], "query.types")
        watermark = int(await _scalar(session, WATERMARK_SQL))
        type_clause = ""
        if patterns:
            type_clause = (
                "AND (type = ANY(CAST(:exact AS text[])) "
                "OR EXISTS (SELECT 1 FROM unnest(CAST(:prefixes AS text[])) p WHERE starts_with(type, p)))"
            )
        rows = await _rows(
            session,
            f"SELECT {_EVENT_COLUMNS} FROM {s}.outbox WHERE txid < CAST(:watermark AS xid8) "
            f"AND (txid, id) > (CAST(:txid AS xid8), :id) {type_clause} ORDER BY txid, id LIMIT :limit",
            watermark=watermark,
            txid=position[0],
            id=position[1],
            exact=[p for p in patterns if not p.endswith(".*")],
            prefixes=[p[:-1] for p in patterns if p.endswith(".*")],
            limit=limit + 1,
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        if rows:
            position = _position(rows[-1])
        if not has_more:
            # everything below the watermark after the cursor was read: continue after the last of it
            tail = await _first(session, tail_sql, watermark=watermark)
            if tail is not None and _position(tail) > position:
                position = _position(tail)
        return EventPage(
            items=[_event_read(service, row) for row in rows],
            next_cursor=_feed_cursor(service, position),
            has_more=has_more,
        )

    @router.get("/v1/events/types", response_model=list[EventType], summary="The event types of this service")
    async def event_types(_: Annotated[Principal, caller]) -> list[EventType]:
        return [EventType(type=name, description=EVENT_TYPES[name]) for name in service_types(service)]

    def _replay(stored: Mapping[str, Any], digest: str, key: str, response: Response) -> WebhookCreated:
        if stored["request_hash"] != digest:
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        response.headers["Location"] = f"/v1/webhooks/{stored['id']}"
        response.headers["Idempotent-Replayed"] = "true"
        return WebhookCreated(**_webhook_read(service, stored).model_dump(), secret=stored["secret"])

    async def _start_position(session: AsyncSession, after: str | None) -> tuple[int, int]:
        if after == "beginning":
            return 0, 0
        if after:
            keys = decode_cursor_keys(listing, after, 2)
            return keys[0], keys[1]
        # from now on: after everything that can no longer change
        last = await _first(session, tail_sql, watermark=int(await _scalar(session, WATERMARK_SQL)))
        return (0, 0) if last is None else _position(last)

    @router.post(
        "/v1/webhooks",
        status_code=201,
        response_model=WebhookCreated,
        summary="Subscribe a URL to this service's events (the signing secret is shown only here; "
        "retry safely with Idempotency-Key)",
    )
    async def create_webhook(
        request: Request,
        session: SessionDep,
        principal: Annotated[Principal, caller],
        payload: WebhookCreate,
        response: Response,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", max_length=200, description="Reuse it when retrying")
        ] = None,
    ) -> WebhookCreated:
        url = _check_url(payload.url)
        if not await address_allowed(url, settings_of(request.app).allow_private_networks):
            raise validation_problem([_PRIVATE_ADDRESS])
        patterns = _validate_types(service, payload.event_types, "body.event_types")
        digest = _request_hash(payload)
        if idempotency_key:
            stored = await _first(session, by_key_sql, client=principal.client_id, key=idempotency_key)
            if stored is not None:
                return _replay(stored, digest, idempotency_key, response)
        settings = settings_of(request.app)
        count = await _scalar(
            session,
            f"SELECT count(*) FROM {s}.webhook_subscriptions WHERE client_id = :client AND status <> 'deactivated'",
            client=principal.client_id,
        )
        if count >= settings.max_per_client:
            raise ProblemError(WEBHOOK_LIMIT, limit=settings.max_per_client)
        start = await _start_position(session, payload.after)
        sees_all = principal.sees_everything()
        row = await _first(
            session,
            f"INSERT INTO {s}.webhook_subscriptions (client_id, created_by, url, description, event_types, "
            "all_objects, vendor, organisation, secret, cursor_txid, cursor_id, idempotency_key, request_hash) "
            "VALUES (:client, :actor, :url, :description, CAST(:types AS text[]), :all, :vendor, :organisation, "
            ":secret, CAST(:txid AS xid8), :id, :key, :hash) ON CONFLICT (client_id, idempotency_key) DO NOTHING "
            f"RETURNING {_SUBSCRIPTION_COLUMNS}, secret",
            client=principal.client_id,
            actor=principal.actor,
            url=url,
            description=payload.description,
            types=patterns,
            all=sees_all,
            vendor=None if sees_all else principal.vendor,
            organisation=None if sees_all else principal.applicant,
            secret=new_secret(),
            txid=start[0],
            id=start[1],
            key=idempotency_key,
            hash=digest,
        )
        if row is None:  # a concurrent request with the same key won, and has committed
            stored = await _first(session, by_key_sql, client=principal.client_id, key=idempotency_key)
            assert stored is not None
            return _replay(stored, digest, str(idempotency_key), response)
        response.headers["Location"] = f"/v1/webhooks/{row['id']}"
        return WebhookCreated(**_webhook_read(service, row).model_dump(), secret=row["secret"])

    @router.get("/v1/webhooks", response_model=WebhookPage, summary="Your webhook subscriptions")
    async def list_webhooks(
        session: SessionDep,
        principal: Annotated[Principal, caller],
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> WebhookPage:
        clause, args = _whose(principal)
        after = decode_cursor(f"{service}-webhooks", cursor) if cursor else 0
        rows = await _rows(
            session,
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM {s}.webhook_subscriptions "
            f"WHERE id > :after AND {clause} ORDER BY id LIMIT :limit",
            after=after,
            limit=limit + 1,
            **args,
        )
        items = [_webhook_read(service, row) for row in rows[:limit]]
        more = len(rows) > limit and items
        return WebhookPage(
            items=items, next_cursor=encode_cursor(f"{service}-webhooks", items[-1].id) if more else None
        )

    WebhookId = Annotated[int, Path(ge=1, le=2**62)]

    @router.get("/v1/webhooks/{webhook_id}", response_model=WebhookRead, summary="One of your webhook subscriptions")
    async def get_webhook(
        session: SessionDep, principal: Annotated[Principal, caller], webhook_id: WebhookId
    ) -> WebhookRead:
        return _webhook_read(service, await _subscription(session, principal, webhook_id))

    @router.delete(
        "/v1/webhooks/{webhook_id}", status_code=204, summary="Deactivate a subscription (its log is kept; idempotent)"
    )
    async def deactivate_webhook(
        session: SessionDep, principal: Annotated[Principal, caller], webhook_id: WebhookId
    ) -> Response:
        await _subscription(session, principal, webhook_id)
        await session.execute(
            text(
                f"UPDATE {s}.webhook_subscriptions SET status = 'deactivated', lease_token = NULL, "
                "deactivated_at = coalesce(deactivated_at, clock_timestamp()), updated_at = clock_timestamp() "
                "WHERE id = :id"
            ),
            {"id": webhook_id},
        )
        return Response(status_code=204)

    @router.post(
        "/v1/webhooks/{webhook_id}/resume",
        response_model=WebhookRead,
        summary="Resume a suspended subscription where it stopped (idempotent)",
    )
    async def resume_webhook(
        request: Request, session: SessionDep, principal: Annotated[Principal, caller], webhook_id: WebhookId
    ) -> WebhookRead:
        current = await _subscription(session, principal, webhook_id)
        if current["status"] == "deactivated":
            raise ProblemError(WEBHOOK_DEACTIVATED, id=webhook_id)
        row = await _first(
            session,
            f"UPDATE {s}.webhook_subscriptions SET status = 'active', attempts = 0, failing_since = NULL, "
            "suspended_at = NULL, next_attempt_at = clock_timestamp(), updated_at = clock_timestamp() "
            f"WHERE id = :id RETURNING {_SUBSCRIPTION_COLUMNS}",
            id=webhook_id,
        )
        assert row is not None
        dispatcher: Dispatcher | None = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()
        return _webhook_read(service, row)

    @router.get(
        "/v1/webhooks/{webhook_id}/deliveries",
        response_model=DeliveryPage,
        summary="The delivery log of a subscription, newest first",
    )
    async def list_deliveries(
        session: SessionDep,
        principal: Annotated[Principal, caller],
        webhook_id: WebhookId,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> DeliveryPage:
        await _subscription(session, principal, webhook_id)
        deliveries = f"{service}-webhook-deliveries"
        before = decode_cursor(deliveries, cursor) if cursor else 2**62
        rows = await _rows(
            session,
            f"SELECT {_DELIVERY_COLUMNS} FROM {s}.webhook_deliveries "
            "WHERE subscription_id = :sub AND id < :before ORDER BY id DESC LIMIT :limit",
            sub=webhook_id,
            before=before,
            limit=limit + 1,
        )
        items = [_delivery_read(service, row) for row in rows[:limit]]
        more = len(rows) > limit and items
        return DeliveryPage(items=items, next_cursor=encode_cursor(deliveries, items[-1].id) if more else None)

    @router.post(
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        status_code=201,
        response_model=DeliveryRead,
        summary="Send that delivery's event again now (signed afresh; logged as a manual delivery)",
    )
    async def redeliver(
        request: Request,
        session: SessionDep,
        principal: Annotated[Principal, caller],
        webhook_id: WebhookId,
        delivery_id: Annotated[int, Path(ge=1, le=2**62)],
    ) -> DeliveryRead:
        target = await _subscription(session, principal, webhook_id)
        found = await _first(
            session,
            f"SELECT event_id FROM {s}.webhook_deliveries WHERE id = :delivery AND subscription_id = :sub",
            delivery=delivery_id,
            sub=webhook_id,
        )
        if found is None:
            raise ProblemError(WEBHOOK_DELIVERY_NOT_FOUND, id=delivery_id)
        if target["status"] == "deactivated":
            raise ProblemError(WEBHOOK_DEACTIVATED, id=webhook_id)
        event = await _first(session, f"SELECT {_EVENT_COLUMNS} FROM {s}.outbox WHERE id = :id", id=found["event_id"])
        assert event is not None
        attempt = 1 + int(
            await _scalar(
                session,
                f"SELECT count(*) FROM {s}.webhook_deliveries WHERE subscription_id = :sub AND event_id = :event",
                sub=webhook_id,
                event=event["id"],
            )
        )
        # only reads so far: end the transaction and hand the connection back before the receiver is
        # called (it may take WEBHOOK_TIMEOUT_SECONDS); the result is recorded in a new short transaction
        await session.commit()
        dispatcher: Dispatcher | None = getattr(request.app.state, "dispatcher", None)
        own = dispatcher is None
        if dispatcher is None:
            dispatcher = Dispatcher(
                str(request.app.state.settings.async_database_url), service, settings_of(request.app)
            )
        try:
            result = await dispatcher.send(target["url"], target["secret"], event, attempt)
        finally:
            if own:
                await dispatcher.stop()
        row = await _first(
            session,
            f"INSERT INTO {s}.webhook_deliveries (subscription_id, event_id, event_type, attempt, manual, delivered, "
            "status_code, error, duration_ms) VALUES (:sub, :event, :type, :attempt, true, :delivered, :status, "
            f":error, :ms) RETURNING {_DELIVERY_COLUMNS}",
            sub=webhook_id,
            event=event["id"],
            type=event["type"],
            attempt=attempt,
            delivered=result.delivered,
            status=result.status_code,
            error=result.error,
            ms=result.duration_ms,
        )
        assert row is not None
        return _delivery_read(service, row)

    return router
