"""What the vouchers service asks its peers, and nothing more.

- eligibility: the approved decision to issue from, and the policy parameters in effect
  on the claim date (one source of policy numbers for the whole programme);
- registry: whether a vendor may redeem a compute voucher (a registered compute vendor
  not affiliated with the holder), cached briefly because vendors redeem often.
Failures raise `PeerUnavailable`: the caller answers 503 and writes nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.errors import ProblemError
from shared.peers import PeerClient, PeerRejected, PeerUnavailable

from .errors import DECISION_NOT_APPROVED, PARAMETER_MISSING

#: The policy parameters issuing reads (service.issue_voucher, ceilings.m3_ceilings): read before its transaction.
ISSUE_PARAMETERS = (
    "vouchers.validity",
    "M3.contract_ratio",
    "M3.eligible_cost_components",
    "M3.annual_claim_ceiling_fen",
    "M3.annual_redemption_ceiling_fen",
)


class Eligibility:
    def __init__(
        self,
        client: PeerClient,
        histories: dict[str, dict[str, Any]] | None = None,
        decisions: dict[uuid.UUID, dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        self._histories: dict[str, dict[str, Any]] = histories or {}
        self._decisions: dict[uuid.UUID, dict[str, Any]] = decisions or {}

    async def prepared(self, decision_id: uuid.UUID, parameter_ids: tuple[str, ...] = ()) -> Eligibility:
        """A client for one request that holds the decision and these parameters already.

        Issuing reads them inside its transaction, which holds the decision's lock: asked here,
        in parallel and before any transaction, no peer call is made while one is open (issue
        #12). If any cannot be read the request fails now, 503 or 409 `decision_not_approved`,
        having written nothing and within one call's retry budget.
        """
        found = await asyncio.gather(
            self.approved_decision(decision_id),
            *(self._history(i) for i in parameter_ids),
            return_exceptions=True,
        )
        answers: list[dict[str, Any]] = []
        for result in found:
            if isinstance(result, BaseException):
                raise result
            answers.append(result)
        histories = {**self._histories, **dict(zip(parameter_ids, answers[1:], strict=True))}
        return Eligibility(self.client, histories, {**self._decisions, decision_id: answers[0]})

    async def _history(self, parameter_id: str) -> dict[str, Any]:
        if parameter_id in self._histories:
            return self._histories[parameter_id]
        try:
            parameter: dict[str, Any] = await self.client.get_json(f"/v1/policy/parameters/{parameter_id}")
        except PeerRejected as exc:
            raise PeerUnavailable(self.client.name, f"HTTP {exc.status} for {parameter_id}") from exc
        return parameter

    async def approved_decision(self, decision_id: uuid.UUID) -> dict[str, Any]:
        if decision_id in self._decisions:
            return self._decisions[decision_id]
        try:
            decision: dict[str, Any] = await self.client.get_json(f"/v1/approved-decisions/{decision_id}")
        except PeerRejected as exc:
            if exc.status == 404:
                raise ProblemError(DECISION_NOT_APPROVED, decision_id=str(decision_id)) from exc
            raise PeerUnavailable(self.client.name, f"HTTP {exc.status}") from exc
        return decision

    async def parameter(self, parameter_id: str, day: date) -> Any:
        """The value in effect on `day` (the claim date)."""
        parameter = await self._history(parameter_id)
        for value in parameter["history"]:
            start = date.fromisoformat(value["effective_from"])
            end = date.fromisoformat(value["effective_to"]) if value["effective_to"] else None
            if start <= day and (end is None or day <= end):
                return value["value"]
        raise ProblemError(PARAMETER_MISSING, parameter=parameter_id, day=day.isoformat())


@dataclass(frozen=True)
class VendorCheck:
    is_compute_vendor: bool
    affiliated: bool


class Registry:
    def __init__(self, client: PeerClient, ttl_seconds: float) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._cache: dict[tuple[str, str, date], tuple[float, VendorCheck]] = {}

    async def compute_vendor_check(self, vendor: str, holder: str, day: date) -> VendorCheck:
        key = (vendor, holder, day)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        try:
            found = await self.client.get_json(f"/v1/vendors/{vendor}", params={"as_of": day.isoformat()})
        except PeerRejected as exc:
            if exc.status not in (404, 422):
                raise PeerUnavailable(self.client.name, f"HTTP {exc.status}") from exc
            found = None
        affiliations = await self.client.get_json(
            "/v1/affiliations",
            params={"organisation": holder, "active": "true", "as_of": day.isoformat(), "limit": 500},
        )
        related = {a["credit_code_a"] for a in affiliations["items"]} | {
            a["credit_code_b"] for a in affiliations["items"]
        }
        check = VendorCheck(
            is_compute_vendor=bool(found and found.get("is_compute_vendor") and found.get("active", True)),
            affiliated=vendor in related,
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), check)
        return check
