"""What time it is for an enterprise: the real clock, or in sandbox mode the test clock it is bound to.

Test clocks (issue #15, docs/sandbox.md) live in the registry, which owns organisations: an administrator
creates a clock frozen at an instant, binds test enterprises to it and advances it. In sandbox mode
(`SANDBOX_MODE`, refused in production by shared/settings.py) eligibility and vouchers ask the registry,
over REST with the peer timeout, for the clock of the enterprise a request is about; an unbound
enterprise keeps the real clock. A registry that cannot be reached, or answers what it should not, is
`PeerUnavailable`: the request answers 503 and writes nothing, never a guessed time. Outside sandbox mode
`EnterpriseClocks` has no registry: no call, the real clock, at the cost of one attribute test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.peers import PeerClient, PeerRejected, PeerUnavailable

#: The registry's routes peers read (services/registry/clocks/endpoints.py), scope `registry:read`.
BINDINGS_PATH = "/v1/test-clock-bindings"
#: Pages of bindings read at most by `bound()`: a sandbox's few test enterprises, not a production registry.
MAX_PAGES = 100


def real_clock() -> datetime:
    return datetime.now(UTC)


class EnterpriseClocks:
    """`now_for(credit_code)`: the enterprise's test clock's time in sandbox mode, else the real clock's."""

    def __init__(self, registry: PeerClient | None, real: Callable[[], datetime] = real_clock) -> None:
        self.registry = registry  # None: not in sandbox mode
        self.real = real

    @property
    def sandbox(self) -> bool:
        return self.registry is not None

    async def _get(self, registry: PeerClient, path: str, **params: Any) -> Any:
        try:
            return await registry.get_json(path, params=params or None)
        except PeerRejected as exc:  # our own question refused: a fault, never "no clock"
            raise PeerUnavailable(registry.name, f"unexpected HTTP {exc.status} for {BINDINGS_PATH}") from exc

    async def clock_of(self, credit_code: str) -> datetime | None:
        """The time of the test clock the enterprise is bound to; None if unbound (or not in sandbox mode)."""
        if self.registry is None:
            return None
        answer = await self._get(self.registry, f"{BINDINGS_PATH}/{quote(credit_code, safe='')}")
        clock = answer.get("test_clock") if isinstance(answer, dict) else None
        if clock is None:
            return None
        return _instant(self.registry, clock.get("frozen_time"))

    async def now_for(self, credit_code: str) -> datetime:
        """Now, for a request about this enterprise."""
        if self.registry is None:
            return self.real()
        return await self.clock_of(credit_code) or self.real()

    async def bound(self) -> dict[str, datetime]:
        """Every enterprise bound to a test clock, with its clock's time (empty outside sandbox mode)."""
        if self.registry is None:
            return {}
        times: dict[str, datetime] = {}
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = await self._get(self.registry, BINDINGS_PATH, **params)
            for item in page["items"]:
                times[str(item["credit_code"])] = _instant(self.registry, item["frozen_time"])
            cursor = page.get("next_cursor")
            if not cursor:
                return times
        raise PeerUnavailable(self.registry.name, f"more than {MAX_PAGES} pages of {BINDINGS_PATH}")


def enterprise_clocks(
    sandbox_mode: bool, registry: PeerClient, real: Callable[[], datetime] = real_clock
) -> EnterpriseClocks:
    """The service's clocks: its registry client (which the service owns and closes) only in sandbox mode."""
    return EnterpriseClocks(registry if sandbox_mode else None, real)


def _instant(registry: PeerClient, value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise PeerUnavailable(registry.name, "a test clock without a valid time") from exc
    if moment.tzinfo is None:
        raise PeerUnavailable(registry.name, "a test clock without a UTC offset")
    return moment.astimezone(UTC)
