"""Per-request context shared by logs, errors, the audit log and peer calls.

`request_id_var` is the id this service assigned to the request (never the caller's);
`correlation_id_var` is what the caller sent to follow its own request (`X-Correlation-ID`, or
`X-Request-ID` from clients written before the server assigned ids), or None.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
