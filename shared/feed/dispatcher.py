"""The webhook dispatcher: each subscription's events in feed order, signed, retried (see shared/feed).

With tracing on (shared/tracing.py) each delivery batch (a claimed subscription served) is a span, each
delivery a client span under it whose W3C `traceparent` the receiver gets with the request."""

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from shared.dbconnect import connect_options, libpq_url
from shared.feed.addresses import AddressRefused, Resolver, pin, resolve_host
from shared.feed.catalogue import type_matches
from shared.feed.retention import FeedRetention
from shared.feed.secretbox import SecretBox, SecretKeyError, seal_at_rest
from shared.feed.settings import WebhookSettings
from shared.feed.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Fields,
    backoff_delay,
    envelope,
    event_id,
    signature_header,
    standard_headers,
)
from shared.periodic import Periodic, start_jobs, stop_jobs
from shared.tracing import instrument_client, span

logger = logging.getLogger("shared.events")  # the name its log lines have always carried (log queries use it)
#: the longest each step of a dispatcher's shutdown may wait
STOP_SECONDS = 5.0


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def subscription_matches(subscription: Fields, event: Fields) -> bool:
    """Type filter and object filter: applicants and vendors get only events about themselves."""
    if not type_matches(list(subscription["event_types"] or ()), str(event["type"])):
        return False
    if subscription["all_objects"]:
        return True
    vendor, organisation = subscription["vendor"], subscription["organisation"]
    return bool((vendor and event["vendor"] == vendor) or (organisation and event["organisation"] == organisation))


#: a delivery not sent because the subscription's secret cannot be decrypted (the key id goes to the log only)
NOT_SENT_UNREADABLE_KEY = (
    "not sent: this service cannot read the subscription's signing secret (its encryption key is not configured; "
    "the operator must give it back in WEBHOOK_SECRET_OLD_KEYS)"
)


class Dispatcher(Periodic):
    """Sends each subscription's events in feed order, one at a time, with retries (see module doc).

    A round (`run_once`) claims subscriptions for the free slots; each claimed subscription is
    served by its own task, and the loop claims more as soon as a slot is free (`wake()`): it never
    waits for a group, so a receiver that hangs holds one slot for one timeout, and others'
    deliveries go on (issue #12). Subscriptions that are failing get at most half of the slots, so
    many broken receivers cannot take them all. Nothing claimed: the next round after
    `WEBHOOK_POLL_SECONDS`, or when woken (a slot is free, a subscription resumed).
    """

    def __init__(self, dsn: str, schema: str, settings: WebhookSettings, *, role: str | None = None) -> None:
        super().__init__(settings.poll_seconds)
        self.name = f"webhooks-{schema}"
        self.dsn = libpq_url(dsn)
        self.schema = schema
        self.settings = settings
        self.role = role
        self.random: Callable[[], float] = random.random
        self._pool: asyncpg.Pool | None = None
        self._http: httpx.AsyncClient | None = None
        self._token = uuid.uuid4()  # this process's leases
        self._serving: dict[int, tuple[asyncio.Task[int], bool]] = {}  # subscription → (task, was failing)
        self._box: SecretBox | None = None
        self.sealed: int | None = None  # secrets this process encrypted at its first round (None: not yet)
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
                              WHERE o.txid < {s}.feed_watermark()
                                AND (o.txid, o.id) > (w.cursor_txid, w.cursor_id))
                ORDER BY w.next_attempt_at, w.id
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {s}.webhook_subscriptions w
               SET lease_token = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
              FROM due WHERE w.id = due.id
            RETURNING w.id, w.url, w.secret, w.secret_encrypted, w.event_types, w.all_objects, w.vendor, w.organisation,
                      w.cursor_txid, w.cursor_id, w.attempts,
                      CASE WHEN w.previous_secret_valid_until > clock_timestamp()
                           THEN w.previous_secret_encrypted END AS previous_secret_encrypted
        """
        self._window_sql = f"""
            SELECT id, txid, occurred_at, type, subject, organisation, vendor, payload::text AS payload
            FROM {s}.outbox
            WHERE txid < {s}.feed_watermark() AND (txid, id) > ($1::xid8, $2)
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
            self._http = instrument_client(
                httpx.AsyncClient(
                    timeout=httpx.Timeout(self.settings.timeout_seconds), follow_redirects=False, trust_env=False
                )
            )
        return self._http

    @property
    def box(self) -> SecretBox:
        """The webhook secrets' keys (`WEBHOOK_SECRET_KEY`, `WEBHOOK_SECRET_OLD_KEYS`)."""
        if self._box is None:
            self._box = self.settings.secret_box()
        return self._box

    @property
    def enabled(self) -> bool:
        return self.settings.poll_seconds > 0  # the settings as they are now (tests replace them)

    def pause(self, failures: int) -> float:
        return self.settings.poll_seconds

    async def stop(self) -> None:
        """Every wait is bounded (STOP_SECONDS each): a shutdown never hangs on a receiver, a lease or a
        connection still held (asyncpg's Pool.close waits for every connection to come back)."""
        await super().stop()
        serving = [task for task, _ in self._serving.values()]
        for task in serving:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*serving, return_exceptions=True), STOP_SECONDS)
        self._serving.clear()
        pool, self._pool = self._pool, None
        if pool is not None:
            # hand back what this process was serving: another process continues at once (not after the lease)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.execute(self._unlease_sql, self._token), STOP_SECONDS)
        if self._http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.aclose(), STOP_SECONDS)
            self._http = None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), STOP_SECONDS)
            except Exception:  # a connection never came back: drop them all (the server rolls back)
                pool.terminate()

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=min(self.settings.concurrency, 4) + 1,  # short statements only
                command_timeout=30,
                **connect_options(self.dsn, f"{self.schema}-webhooks", role=self.role),
            )
        return self._pool

    async def round(self) -> bool:
        """Claimed some: claim again at once (else the pause, which a free slot ends)."""
        return await self.run_once() > 0

    def failed(self, exc: Exception) -> None:
        """The database away, a bug: log, wait, try again."""
        logger.warning("webhook dispatcher: %s: %s", type(exc).__name__, exc)

    # work

    async def run_once(self) -> int:
        """Claim due subscriptions with events waiting for the free slots, each served by its own task; how many."""
        free = self.settings.concurrency - len(self._serving)
        if free <= 0:
            return 0
        pool = await self._ensure_pool()
        if self.sealed is None:  # plaintext secrets, or sealed by an old key: encrypted with the current one
            async with pool.acquire() as connection:
                self.sealed = await seal_at_rest(connection, self.schema, self.box)
            if self.sealed:
                logger.info("webhook secrets of %s encrypted with the current key: %d", self.schema, self.sealed)
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
        self.wake()  # a slot is free

    async def _serve_logged(self, pool: asyncpg.Pool, subscription: Fields, token: uuid.UUID) -> int:
        try:
            attributes: dict[str, str | int] = {
                "webhook.schema": self.schema,
                "webhook.subscription": int(subscription["id"]),
            }
            with span(self.tracer, "webhook delivery batch", attributes) as current:
                sent = await self._serve(pool, subscription, token)
                if current is not None:
                    current.set_attribute("webhook.sent", sent)
            return sent
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out and another round (or process) takes it up
            logger.warning("webhook %s: %s: %s", subscription["id"], type(exc).__name__, exc)
            return 0

    async def _serve(self, pool: asyncpg.Pool, subscription: Fields, token: uuid.UUID) -> int:
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
                try:
                    signing = self.secrets_of(subscription)
                except SecretKeyError as exc:  # sealed by a key configured nowhere: a failure the subscriber sees
                    logger.error("webhook %s.%s: %s", self.schema, sub_id, exc)
                    result = DeliveryResult(False, None, NOT_SENT_UNREADABLE_KEY, 0)
                else:
                    result = await self.send(subscription["url"], signing, event, attempts + 1)
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

    def secrets_of(self, subscription: Fields) -> list[str]:
        """The secrets that sign a subscription's deliveries: its own, and the one its last rotation replaced until
        that one expires (read by the claim only while it is unexpired)."""
        secrets_ = [self.box.secret_of(subscription, self.schema)]
        previous = subscription["previous_secret_encrypted"]
        if previous is not None:
            secrets_.append(self.box.decrypt(str(previous), self.schema))
        return secrets_

    async def send(self, url: str, secrets_: Sequence[str], event: Fields, attempt: int) -> DeliveryResult:
        """One POST of one event, signed with each secret, to the address checked for it; never raises for the
        receiver's failures."""
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
        message_id = event_id(self.schema, int(event["id"]))
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "longgang-ai-webhooks/1",
            **standard_headers(secrets_, message_id, timestamp, body),
            EVENT_ID_HEADER: message_id,
            "Longgang-Event-Type": str(event["type"]),
            "Longgang-Delivery-Attempt": str(attempt),
            SIGNATURE_HEADER: signature_header(secrets_, timestamp, body),  # deprecated: removed in 0.3.0
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
    """Start-up hook: `app.state.webhook_settings` (tests) or the `WEBHOOK_*` environment.

    Refuses to start without `WEBHOOK_SECRET_KEY` (webhook secrets are stored encrypted with it).
    """
    settings = settings_of(app)
    settings.secret_box()  # raises SecretKeyError: unset or malformed
    service_settings = app.state.settings
    dispatcher = Dispatcher(
        service_settings.async_database_url,
        app.state.schema,
        settings,
        role=getattr(service_settings, "db_role", None),
    )
    retention = FeedRetention(
        service_settings.async_database_url,
        app.state.schema,
        settings,
        role=getattr(service_settings, "db_role", None),
    )
    await start_jobs(app, dispatcher=dispatcher, feed_retention=retention)


async def stop_dispatcher(app: FastAPI) -> None:
    await stop_jobs(app, "dispatcher", "feed_retention")
