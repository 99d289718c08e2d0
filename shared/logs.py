"""Structured JSON logs (one object per line) and the request-id middleware.

Every log line carries the service name and the request id. **The server assigns the request
id, always** (a random 32-hex-digit id): it is what the audit log, ledger entries, decisions and
registry versions record, so no caller can file its actions under another's request (issue #12).
It is answered in `X-Request-ID` and in every problem's `request_id`.

What the caller sent to follow its own request is its **correlation id**: `X-Correlation-ID`, or
else `X-Request-ID` (what clients sent before the server assigned ids), when it is sane
(`[A-Za-z0-9._:-]`, at most 128 characters; otherwise it is ignored). It is echoed in
`X-Correlation-ID`, logged as `correlation_id` and stored beside the request id in the audit
log; peer calls send the calling request's id as their correlation id, so one request can be
followed across the three services.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.context import correlation_id_var, request_id_var

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # the whole value (fullmatch)
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        correlation_id = correlation_id_var.get()
        if correlation_id is not None:
            entry["correlation_id"] = correlation_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per peer call is noise
    # our access log replaces uvicorn's
    logging.getLogger("uvicorn.access").disabled = True


def new_request_id() -> str:
    return uuid.uuid4().hex


def correlation_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's correlation id: `X-Correlation-ID`, else `X-Request-ID`, when sane."""
    correlation = requested = None
    for name, value in headers:
        if name == b"x-correlation-id":
            correlation = value
        elif name == b"x-request-id":
            requested = value
    found = correlation if correlation is not None else requested
    if found is None:
        return None
    text = found.decode("latin-1")
    return text if _SAFE_REQUEST_ID.fullmatch(text) else None


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): a new request id, the caller's correlation id, and one
    access log line."""

    def __init__(self, app: ASGIApp, log_successes: bool = True, slow_ms: float = 500.0) -> None:
        self.app = app
        self.logger = logging.getLogger("access")
        self.log_successes = log_successes
        self.slow_ms = slow_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        correlation_id = correlation_of(scope["headers"])
        token = request_id_var.set(request_id)
        correlation_token = correlation_id_var.set(correlation_id)
        added = [(b"x-request-id", request_id.encode("latin-1"))]
        if correlation_id is not None:
            added.append((b"x-correlation-id", correlation_id.encode("latin-1")))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            # a JSON log line costs ~50 µs: on a hot path, log only what someone will read
            if self.log_successes or status >= 400 or duration_ms > self.slow_ms:
                self.logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(duration_ms, 2),
                    },
                )
            request_id_var.reset(token)
            correlation_id_var.reset(correlation_token)
