"""The vouchers service's events (shared/feed), written in the same transaction as the change.

Redemptions, holds, captures, releases and hold expiries are written by the ledger's SQL
functions themselves (migration 0007, migrations/vouchers/functions/: one more INSERT in
the same function call, no extra round trip). The officer-driven flows write theirs
here. The subject of every voucher event is the voucher code, so a subscription's
in-order delivery is also in order per voucher; `organisation` is the holder and
`vendor` the vendor concerned (the redeeming vendor, an M3 voucher's contract vendor, or
the settlement batch's vendor).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from shared.feed.catalogue import register_catalogue
from shared.feed.outbox import NewEvent, emit_many

from .schemas import GrantRead, VoucherRead

#: the vouchers service's event types (GET /v1/events/types)
CATALOGUE = register_catalogue(
    "vouchers",
    {
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
    },
)

VoucherChange = Literal["issued", "voided", "expired"]


def voucher_event(change: VoucherChange, voucher: VoucherRead, **extra: Any) -> NewEvent:
    return NewEvent(
        type=f"vouchers.voucher.{change}",
        subject=voucher.code,
        payload={**voucher.model_dump(mode="json"), **extra},
        organisation=voucher.holder,
        vendor=voucher.vendor,
    )


async def voucher_changed(session: AsyncSession, change: VoucherChange, voucher: VoucherRead, **extra: Any) -> None:
    await emit_many(session, [voucher_event(change, voucher, **extra)])


async def vouchers_expired(session: AsyncSession, vouchers: list[VoucherRead]) -> None:
    await emit_many(session, [voucher_event("expired", voucher) for voucher in vouchers])


async def grant_changed(
    session: AsyncSession, change: Literal["disbursed", "reversed"], grant: GrantRead, **extra: Any
) -> None:
    await emit_many(
        session,
        [
            NewEvent(
                type=f"vouchers.grant.{change}",
                subject=str(grant.id),
                payload={**grant.model_dump(mode="json"), **extra},
                organisation=grant.holder,
            )
        ],
    )


async def settlement_batch_changed(
    session: AsyncSession, change: Literal["created", "closed"], batch: dict[str, Any]
) -> None:
    await emit_many(
        session,
        [
            NewEvent(
                type=f"vouchers.settlement_batch.{change}",
                subject=str(batch["id"]),
                payload=batch,
                vendor=str(batch["vendor"]),
            )
        ],
    )
