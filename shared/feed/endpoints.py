"""`GET /v1/events` (the change feed) and the `/v1/webhooks` endpoints of one service (schema = service name)."""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Path, Query, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, APPLICANT, AUDITOR, PLATFORM, VENDOR, Principal, require
from shared.db import SessionDep
from shared.errors import FieldError, ProblemError, validation_problem
from shared.feed.addresses import address_allowed
from shared.feed.catalogue import EventCatalogue
from shared.feed.dispatcher import Dispatcher, settings_of
from shared.feed.errors import (
    CURSOR_EXPIRED,
    EVENT_EXPIRED,
    IDEMPOTENCY_KEY_REQUIRED,
    IDEMPOTENCY_KEY_REUSED,
    PRIVATE_ADDRESS,
    WEBHOOK_DEACTIVATED,
    WEBHOOK_DELIVERY_NOT_FOUND,
    WEBHOOK_LIMIT,
    WEBHOOK_NOT_FOUND,
)
from shared.feed.schemas import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    DeliveryPage,
    DeliveryRead,
    EventPage,
    EventType,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookRead,
    WebhookSecretRotated,
    WebhookSecretRotation,
    delivery_read,
    event_read,
    feed_cursor,
    feed_listing,
    webhook_read,
)
from shared.feed.secretbox import SecretBox
from shared.feed.signing import new_secret
from shared.openapi import CREATED_AT_LOCATION, Problem
from shared.pagination import decode_cursor, decode_cursor_keys, encode_cursor

FEED_ROLES = (PLATFORM, AUDITOR, ADMIN)
#: Retention deleted what was asked for (docs/webhooks.md, "Retention").
CURSOR_GONE: dict[int | str, dict[str, Any]] = {
    410: {"model": Problem, "description": "`cursor_expired`: events after this cursor were deleted by retention"}
}
EVENT_GONE: dict[int | str, dict[str, Any]] = {
    410: {"model": Problem, "description": "`event_expired`: the delivery's event was deleted by retention"}
}
WEBHOOK_ROLES = (PLATFORM, ADMIN, AUDITOR, APPLICANT, VENDOR)


def _validate_types(known: Sequence[str], patterns: Iterable[str], field: str) -> list[str]:
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


def _key_header(description: str) -> Any:
    """The `Idempotency-Key` header of a webhook call, as `description` says it is used."""
    return Header(alias="Idempotency-Key", max_length=200, description=description)


def _request_hash(payload: WebhookCreate | WebhookSecretRotation) -> str:
    canonical = json.dumps(payload.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _rows(session: AsyncSession, sql: str, **args: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in (await session.execute(text(sql), args)).mappings()]


async def _first(session: AsyncSession, sql: str, **args: Any) -> dict[str, Any] | None:
    row = (await session.execute(text(sql), args)).mappings().first()
    return None if row is None else dict(row)


async def _scalar(session: AsyncSession, sql: str, **args: Any) -> Any:
    return (await session.execute(text(sql), args)).scalar_one()


def _position(row: Mapping[str, Any]) -> tuple[int, int]:
    return int(row["txid"]), int(row["id"])


def events_router(catalogue: EventCatalogue, *, webhook_roles: Sequence[str] = WEBHOOK_ROLES) -> APIRouter:
    """`GET /v1/events` and the `/v1/webhooks` endpoints of the catalogue's service (schema = service name)."""
    service = catalogue.service
    known = list(catalogue.types)
    s = f'"{service}"'
    listing = feed_listing(service)
    tail_sql = (
        f"SELECT txid::text::bigint AS txid, id FROM {s}.outbox "
        "WHERE txid < CAST(:watermark AS xid8) ORDER BY txid DESC, id DESC LIMIT 1"
    )
    by_key_sql = (
        f"SELECT {SUBSCRIPTION_COLUMNS}, secret, secret_encrypted, request_hash FROM {s}.webhook_subscriptions "
        "WHERE client_id = :client AND idempotency_key = :key"
    )
    horizon_sql = f"SELECT trimmed_txid::text::bigint AS txid, trimmed_id AS id FROM {s}.feed_horizon"
    #: the feed's own watermark: its oldest running transaction, in its own ids (feed_epoch_sql)
    watermark_sql = f"SELECT {s}.feed_watermark()::text::bigint"
    router = APIRouter(tags=["events"])
    caller = require(*webhook_roles)

    async def _unexpired(session: AsyncSession, position: tuple[int, int]) -> tuple[int, int]:
        """A cursor before what retention deleted has lost events: 410 `cursor_expired`."""
        horizon = await _first(session, horizon_sql)
        if horizon is not None and position < _position(horizon):
            raise ProblemError(CURSOR_EXPIRED)
        return position

    def _whose(principal: Principal) -> tuple[str, dict[str, Any]]:
        """Administrators manage every subscription (e.g. a revoked client's); others only their own."""
        if principal.has(ADMIN):
            return "TRUE", {}
        return "client_id = :client", {"client": principal.client_id}

    async def _subscription(
        session: AsyncSession, principal: Principal, webhook_id: int, *, lock: bool = False
    ) -> dict[str, Any]:
        clause, args = _whose(principal)
        sql = (
            f"SELECT {SUBSCRIPTION_COLUMNS}, secret, secret_encrypted, rotation_key, rotation_hash, "
            "CASE WHEN previous_secret_valid_until > clock_timestamp() THEN previous_secret_encrypted END "
            f"AS previous_secret_encrypted FROM {s}.webhook_subscriptions WHERE id = :id AND {clause}"
            + (" FOR UPDATE" if lock else "")
        )
        row = await _first(session, sql, id=webhook_id, **args)
        if row is None:
            raise ProblemError(WEBHOOK_NOT_FOUND, id=webhook_id)
        return row

    @router.get(
        "/v1/events",
        response_model=EventPage,
        responses=CURSOR_GONE,
        summary="The change feed: events in commit-safe order, resumable with `after` (no loss, no duplicates)",
    )
    async def list_events(
        session: SessionDep,
        _: Annotated[Principal, require(*FEED_ROLES)],
        after: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        types: Annotated[
            str | None, Query(max_length=2000, description="Comma-separated types or prefixes (`vouchers.hold.*`)")
        ] = None,
    ) -> EventPage:
        keys = decode_cursor_keys(listing, after, 2) if after else (0, 0)
        position = await _unexpired(session, (keys[0], keys[1])) if after else (0, 0)
        patterns = _validate_types(known, [t.strip() for t in (types or "").split(",") if t.strip()], "query.types")
        watermark = int(await _scalar(session, watermark_sql))
        type_clause = ""
        if patterns:
            type_clause = (
                "AND (type = ANY(CAST(:exact AS text[])) "
                "OR EXISTS (SELECT 1 FROM unnest(CAST(:prefixes AS text[])) p WHERE starts_with(type, p)))"
            )
        rows = await _rows(
            session,
            f"SELECT {EVENT_COLUMNS} FROM {s}.outbox WHERE txid < CAST(:watermark AS xid8) "
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
            items=[event_read(service, row) for row in rows],
            next_cursor=feed_cursor(service, position),
            has_more=has_more,
        )

    @router.get("/v1/events/types", response_model=list[EventType], summary="The event types of this service")
    async def list_event_types(_: Annotated[Principal, caller]) -> list[EventType]:
        return [EventType(type=name, description=description) for name, description in catalogue.types.items()]

    def _replay(stored: Mapping[str, Any], digest: str, key: str, response: Response, box: SecretBox) -> WebhookCreated:
        if stored["request_hash"] != digest:
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        response.headers["Location"] = f"/v1/webhooks/{stored['id']}"
        response.headers["Idempotent-Replayed"] = "true"
        secret = box.secret_of(stored, service)
        return WebhookCreated(**webhook_read(service, stored).model_dump(), secret=secret)

    async def _start_position(session: AsyncSession, after: str | None) -> tuple[int, int]:
        if after == "beginning":
            return 0, 0
        if after:
            keys = decode_cursor_keys(listing, after, 2)
            return await _unexpired(session, (keys[0], keys[1]))
        # from now on: after everything that can no longer change
        last = await _first(session, tail_sql, watermark=int(await _scalar(session, watermark_sql)))
        return (0, 0) if last is None else _position(last)

    @router.post(
        "/v1/webhooks",
        status_code=201,
        response_model=WebhookCreated,
        responses={**CREATED_AT_LOCATION, **CURSOR_GONE},
        summary="Subscribe a URL to this service's events (the signing secret is shown only here; "
        "retry safely with Idempotency-Key)",
    )
    async def create_webhook(
        request: Request,
        session: SessionDep,
        principal: Annotated[Principal, caller],
        payload: WebhookCreate,
        response: Response,
        idempotency_key: Annotated[str | None, _key_header("Reuse it when retrying")] = None,
    ) -> WebhookCreated:
        url = _check_url(payload.url)
        if not await address_allowed(url, settings_of(request.app).allow_private_networks):
            raise validation_problem([PRIVATE_ADDRESS])
        patterns = _validate_types(known, payload.event_types, "body.event_types")
        digest = _request_hash(payload)
        settings = settings_of(request.app)
        box = settings.secret_box()
        if idempotency_key:
            stored = await _first(session, by_key_sql, client=principal.client_id, key=idempotency_key)
            if stored is not None:
                return _replay(stored, digest, idempotency_key, response, box)
        count = await _scalar(
            session,
            f"SELECT count(*) FROM {s}.webhook_subscriptions WHERE client_id = :client AND status <> 'deactivated'",
            client=principal.client_id,
        )
        if count >= settings.max_per_client:
            raise ProblemError(WEBHOOK_LIMIT, limit=settings.max_per_client)
        start = await _start_position(session, payload.after)
        sees_all = principal.sees_everything()
        secret = new_secret()
        row = await _first(
            session,
            f"INSERT INTO {s}.webhook_subscriptions (client_id, created_by, url, description, event_types, "
            "all_objects, vendor, organisation, secret_encrypted, cursor_txid, cursor_id, idempotency_key, "
            "request_hash) VALUES (:client, :actor, :url, :description, CAST(:types AS text[]), :all, :vendor, "
            ":organisation, :sealed, CAST(:txid AS xid8), :id, :key, :hash) "
            f"ON CONFLICT (client_id, idempotency_key) DO NOTHING RETURNING {SUBSCRIPTION_COLUMNS}",
            client=principal.client_id,
            actor=principal.actor,
            url=url,
            description=payload.description,
            types=patterns,
            all=sees_all,
            vendor=None if sees_all else principal.vendor,
            organisation=None if sees_all else principal.applicant,
            sealed=box.encrypt(secret, service),
            txid=start[0],
            id=start[1],
            key=idempotency_key,
            hash=digest,
        )
        if row is None:  # a concurrent request with the same key won, and has committed
            stored = await _first(session, by_key_sql, client=principal.client_id, key=idempotency_key)
            assert stored is not None
            return _replay(stored, digest, str(idempotency_key), response, box)
        response.headers["Location"] = f"/v1/webhooks/{row['id']}"
        return WebhookCreated(**webhook_read(service, row).model_dump(), secret=secret)

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
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM {s}.webhook_subscriptions "
            f"WHERE id > :after AND {clause} ORDER BY id LIMIT :limit",
            after=after,
            limit=limit + 1,
            **args,
        )
        items = [webhook_read(service, row) for row in rows[:limit]]
        more = len(rows) > limit and items
        return WebhookPage(
            items=items, next_cursor=encode_cursor(f"{service}-webhooks", items[-1].id) if more else None
        )

    WebhookId = Annotated[int, Path(ge=1, le=2**62)]

    @router.get("/v1/webhooks/{webhook_id}", response_model=WebhookRead, summary="One of your webhook subscriptions")
    async def get_webhook(
        session: SessionDep, principal: Annotated[Principal, caller], webhook_id: WebhookId
    ) -> WebhookRead:
        return webhook_read(service, await _subscription(session, principal, webhook_id))

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
            f"WHERE id = :id RETURNING {SUBSCRIPTION_COLUMNS}",
            id=webhook_id,
        )
        assert row is not None
        dispatcher: Dispatcher | None = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()
        return webhook_read(service, row)

    @router.post(
        "/v1/webhooks/{webhook_id}/rotate",
        response_model=WebhookSecretRotated,
        summary="Replace the signing secret; the replaced one keeps signing beside it for a while "
        "(Idempotency-Key required)",
    )
    async def rotate_webhook_secret(
        request: Request,
        session: SessionDep,
        principal: Annotated[Principal, caller],
        webhook_id: WebhookId,
        response: Response,
        idempotency_key: Annotated[
            str | None, _key_header("Required: a rotation sent again without it would replace the secret it had made")
        ] = None,
        payload: WebhookSecretRotation | None = None,
    ) -> WebhookSecretRotated:
        """The new secret is answered once (and to a retry with the same key and body, which changes nothing). Until
        `previous_secret_valid_until` each delivery carries two signatures, the new secret's and the replaced one's,
        so a receiver may switch secrets at its own pace. Only the last rotation's key is kept: a retry of an
        earlier rotation, sent after a later one, rotates again."""
        if not idempotency_key:
            raise ProblemError(IDEMPOTENCY_KEY_REQUIRED)
        rotation = payload or WebhookSecretRotation()
        digest = _request_hash(rotation)
        current = await _subscription(session, principal, webhook_id, lock=True)
        box = settings_of(request.app).secret_box()
        if current["rotation_key"] == idempotency_key:
            if current["rotation_hash"] != digest:
                raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=idempotency_key)
            response.headers["Idempotent-Replayed"] = "true"
            answered = webhook_read(service, current).model_dump()
            return WebhookSecretRotated(**answered, secret=box.secret_of(current, service))
        if current["status"] == "deactivated":
            raise ProblemError(WEBHOOK_DEACTIVATED, id=webhook_id)
        replaced = box.secret_of(current, service)
        secret = new_secret()
        keep = rotation.grace_seconds > 0
        row = await _first(
            session,
            f"UPDATE {s}.webhook_subscriptions SET secret_encrypted = :sealed, secret = NULL, "
            "previous_secret_encrypted = :previous, "
            "previous_secret_valid_until = "
            "CASE WHEN :keep THEN clock_timestamp() + make_interval(secs => :seconds) END, "
            "secret_rotated_at = clock_timestamp(), rotation_key = :key, rotation_hash = :hash, "
            f"updated_at = clock_timestamp() WHERE id = :id RETURNING {SUBSCRIPTION_COLUMNS}",
            sealed=box.encrypt(secret, service),
            previous=box.encrypt(replaced, service) if keep else None,
            keep=keep,
            seconds=rotation.grace_seconds,
            key=idempotency_key,
            hash=digest,
            id=webhook_id,
        )
        assert row is not None  # locked above
        return WebhookSecretRotated(**webhook_read(service, row).model_dump(), secret=secret)

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
            f"SELECT {DELIVERY_COLUMNS} FROM {s}.webhook_deliveries "
            "WHERE subscription_id = :sub AND id < :before ORDER BY id DESC LIMIT :limit",
            sub=webhook_id,
            before=before,
            limit=limit + 1,
        )
        items = [delivery_read(service, row) for row in rows[:limit]]
        more = len(rows) > limit and items
        return DeliveryPage(items=items, next_cursor=encode_cursor(deliveries, items[-1].id) if more else None)

    @router.post(
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        status_code=201,
        response_model=DeliveryRead,
        responses=EVENT_GONE,
        summary="Send that delivery's event again now (signed afresh; logged as a manual delivery)",
    )
    async def redeliver_delivery(
        request: Request,
        session: SessionDep,
        principal: Annotated[Principal, caller],
        webhook_id: WebhookId,
        delivery_id: Annotated[int, Path(ge=1, le=2**62)],
        response: Response,
        idempotency_key: Annotated[
            str | None, _key_header("Optional; with it, a retry answers the delivery made instead of sending again")
        ] = None,
    ) -> DeliveryRead:
        """With an `Idempotency-Key`, a retry of this call (the same subscription and event) answers the redelivery
        it made (`Idempotent-Replayed: true`) instead of sending the event once more; the key with another event is
        409 `idempotency_key_reused`. Two retries at the very same moment may both send (receivers deduplicate by
        `webhook-id`); the log keeps one."""
        target = await _subscription(session, principal, webhook_id)
        found = await _first(
            session,
            f"SELECT event_id FROM {s}.webhook_deliveries WHERE id = :delivery AND subscription_id = :sub",
            delivery=delivery_id,
            sub=webhook_id,
        )
        if found is None:
            raise ProblemError(WEBHOOK_DELIVERY_NOT_FOUND, id=delivery_id)
        if idempotency_key:
            made = await _made(session, webhook_id, idempotency_key)
            if made is not None:
                return _replayed_delivery(made, int(found["event_id"]), idempotency_key, response)
        if target["status"] == "deactivated":
            raise ProblemError(WEBHOOK_DEACTIVATED, id=webhook_id)
        event = await _first(session, f"SELECT {EVENT_COLUMNS} FROM {s}.outbox WHERE id = :id", id=found["event_id"])
        if event is None:  # deleted by retention (the delivery log may outlive it)
            raise ProblemError(EVENT_EXPIRED, id=f"{service}-{found['event_id']}")
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
            result = await dispatcher.send(target["url"], dispatcher.secrets_of(target), event, attempt)
        finally:
            if own:
                await dispatcher.stop()
        row = await _first(
            session,
            f"INSERT INTO {s}.webhook_deliveries (subscription_id, event_id, event_type, attempt, manual, delivered, "
            "status_code, error, duration_ms, idempotency_key) VALUES (:sub, :event, :type, :attempt, true, "
            ":delivered, :status, :error, :ms, :key) "
            "ON CONFLICT (subscription_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
            f"RETURNING {DELIVERY_COLUMNS}",
            sub=webhook_id,
            event=event["id"],
            type=event["type"],
            attempt=attempt,
            delivered=result.delivered,
            status=result.status_code,
            error=result.error,
            ms=result.duration_ms,
            key=idempotency_key or None,
        )
        if row is None:  # a retry with the same key logged its redelivery meanwhile: that one is the answer
            made = await _made(session, webhook_id, str(idempotency_key))
            assert made is not None
            return _replayed_delivery(made, int(event["id"]), str(idempotency_key), response)
        return delivery_read(service, row)

    async def _made(session: AsyncSession, webhook_id: int, key: str) -> dict[str, Any] | None:
        """The redelivery a call with this key logged, if any."""
        return await _first(
            session,
            f"SELECT {DELIVERY_COLUMNS} FROM {s}.webhook_deliveries "
            "WHERE subscription_id = :sub AND idempotency_key = :key",
            sub=webhook_id,
            key=key,
        )

    def _replayed_delivery(made: Mapping[str, Any], event: int, key: str, response: Response) -> DeliveryRead:
        if int(made["event_id"]) != event:
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        response.headers["Idempotent-Replayed"] = "true"
        return delivery_read(service, made)

    return router
