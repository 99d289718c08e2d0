"""All the authorisations' SQL (`vouchers.vendor_authorisations`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var

COLUMNS = "id, vendor, basis, granted_by, granted_at, revoked_at, revoked_by, revoke_reason"


async def voucher(session: AsyncSession, code: str) -> RowMapping | None:
    """A voucher's id, code, holder and vendor."""
    return (
        (
            await session.execute(
                text("SELECT id, code, holder, vendor FROM vouchers.vouchers WHERE code = :code"), {"code": code}
            )
        )
        .mappings()
        .first()
    )


async def authorise(
    session: AsyncSession, voucher_id: int, vendors: Iterable[str], basis: str, granted_by: str
) -> None:
    """Authorise vendors for a voucher (those already standing are left as they are)."""
    for vendor in sorted(set(vendors)):
        await session.execute(
            text(
                "INSERT INTO vouchers.vendor_authorisations (voucher_id, vendor, basis, granted_by, request_id) "
                "VALUES (:voucher, :vendor, :basis, :by, :request_id) "
                "ON CONFLICT (voucher_id, vendor) WHERE revoked_at IS NULL DO NOTHING"
            ),
            {
                "voucher": voucher_id,
                "vendor": vendor,
                "basis": basis,
                "by": granted_by,
                "request_id": request_id_var.get(),
            },
        )


async def standing(session: AsyncSession, voucher_id: int, vendor: str) -> RowMapping | None:
    return (
        (
            await session.execute(
                text(
                    f"SELECT {COLUMNS} FROM vouchers.vendor_authorisations "
                    "WHERE voucher_id = :voucher AND vendor = :vendor AND revoked_at IS NULL"
                ),
                {"voucher": voucher_id, "vendor": vendor},
            )
        )
        .mappings()
        .first()
    )


async def add_by_holder(session: AsyncSession, voucher_id: int, vendor: str, granted_by: str) -> RowMapping:
    return (
        (
            await session.execute(
                text(
                    "INSERT INTO vouchers.vendor_authorisations (voucher_id, vendor, basis, granted_by, request_id) "
                    f"VALUES (:voucher, :vendor, 'holder', :by, :request_id) RETURNING {COLUMNS}"
                ),
                {"voucher": voucher_id, "vendor": vendor, "by": granted_by, "request_id": request_id_var.get()},
            )
        )
        .mappings()
        .one()
    )


async def of_voucher(session: AsyncSession, voucher_id: int) -> Sequence[RowMapping]:
    return (
        (
            await session.execute(
                text(f"SELECT {COLUMNS} FROM vouchers.vendor_authorisations WHERE voucher_id = :voucher ORDER BY id"),
                {"voucher": voucher_id},
            )
        )
        .mappings()
        .all()
    )


async def revoke(
    session: AsyncSession, voucher_id: int, vendor: str, revoked_by: str, reason: str | None
) -> RowMapping | None:
    return (
        (
            await session.execute(
                text(
                    "UPDATE vouchers.vendor_authorisations SET revoked_at = clock_timestamp(), revoked_by = :by, "
                    "revoke_reason = :reason "
                    "WHERE voucher_id = :voucher AND vendor = :vendor AND revoked_at IS NULL "
                    f"RETURNING {COLUMNS}"
                ),
                {"voucher": voucher_id, "vendor": vendor, "by": revoked_by, "reason": reason},
            )
        )
        .mappings()
        .first()
    )
