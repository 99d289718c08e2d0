"""A real HTTP server that receives webhooks, for the tests (stdlib, in a background thread).

It records every request it is sent (headers, raw body, the status it answered) and
answers 200 unless told otherwise: `fail(n, status)` answers the next `n` requests with
`status`; `stop()` closes the port (connection refused) and `start()` opens it again on
the same port.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.feed.signing import verify_signature


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document

    @property
    def event_id(self) -> str:
        return self.headers["longgang-event-id"]

    def verified(self, secret: str) -> bool:
        """The deprecated house signature (`Longgang-Signature`) checks out."""
        return verify_signature(secret, self.headers.get("longgang-signature", ""), self.body)

    def standard_verified(self, secret: str | bytes, body: bytes | None = None) -> bool:
        """The Standard Webhooks headers check out with that project's own library (`standardwebhooks`)."""
        try:
            Webhook(secret).verify(self.body if body is None else body, self.headers)
        except WebhookVerificationError:
            return False
        return True


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[Received] = []
        self._answers: deque[int] = deque()
        self.default_status = 200
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def fail(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._answers.extend([status] * count)

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            status = self._answers.popleft() if self._answers else self.default_status
            self.requests.append(Received(headers, body, status))
            return status

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._answer({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # what arrived

    def accepted(self) -> list[Received]:
        """Requests answered with 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_ids(self) -> list[str]:
        return [r.event_id for r in self.accepted()]

    def accepted_subjects(self) -> list[str]:
        return [r.event["subject"] for r in self.accepted()]
