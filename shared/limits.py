"""Refuse request bodies above a size limit before they are read into memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.context import request_id_var
from shared.errors import PAYLOAD_TOO_LARGE, PROBLEM_JSON


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, send: Send) -> None:
        # every field of the documented Problem (shared/app.py), as the exception handlers answer
        body = {
            "type": "urn:longgang-ai:problem:" + PAYLOAD_TOO_LARGE.code,
            "title": PAYLOAD_TOO_LARGE.en.format(limit=self.max_bytes),
            "status": 413,
            "code": PAYLOAD_TOO_LARGE.code,
            "detail": PAYLOAD_TOO_LARGE.zh.format(limit=self.max_bytes)
            + " / "
            + PAYLOAD_TOO_LARGE.en.format(limit=self.max_bytes),
            "instance": scope.get("path", ""),
            "request_id": request_id_var.get(),
        }
        payload = json.dumps(body, ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, send)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await self._refuse(scope, send)
