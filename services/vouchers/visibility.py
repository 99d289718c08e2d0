"""Who may see a voucher, and which compute vendor may spend one (M1): the rules the voucher routes and the
settlement routes share. Anyone else hears `voucher_not_found`: a voucher's existence is not revealed."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request

from shared.auth import ADMIN, APPROVER, AUDITOR, OFFICER, PLATFORM, Principal
from shared.errors import ProblemError
from shared.instants import local_today

from .errors import VENDOR_AFFILIATED, VENDOR_NOT_COMPUTE_VENDOR, VOUCHER_NOT_FOUND
from .models import Voucher
from .peers import Registry, VendorCheck
from .pool import LedgerPool


async def _compute_vendor_check(request: Request, vendor: str, holder: str, moment: datetime) -> VendorCheck:
    """M1: is `vendor` a registered compute vendor, and is it affiliated with `holder`? (the registry, cached)"""
    registry: Registry = request.app.state.registry
    return await registry.compute_vendor_check(vendor, holder, local_today(moment))


async def compute_vendor_may_redeem(
    request: Request, ledger_pool: LedgerPool, code: str, vendor: str, day: datetime
) -> None:
    """M1: a registered compute vendor, not affiliated with the holder (asked of the registry)."""
    holder = await ledger_pool.ready.fetchval("SELECT holder FROM vouchers.vouchers WHERE code = $1", code)
    if holder is None:
        return  # the ledger function answers voucher_not_found
    check = await _compute_vendor_check(request, vendor, holder, day)
    if not check.is_compute_vendor:
        raise ProblemError(VENDOR_NOT_COMPUTE_VENDOR)
    if check.affiliated:
        raise ProblemError(VENDOR_AFFILIATED)


async def _authorised(request: Request, voucher_id: int, vendor: str) -> bool:
    """Has the holder authorised this vendor for this (compute) voucher? One index probe."""
    ledger_pool: LedgerPool = request.app.state.ledger_pool
    return bool(
        await ledger_pool.ready.fetchval(
            "SELECT EXISTS (SELECT 1 FROM vouchers.vendor_authorisations "
            "WHERE voucher_id = $1 AND vendor = $2 AND revoked_at IS NULL)",
            voucher_id,
            vendor,
        )
    )


#: The roles that read every voucher (the bureau, auditors and the data platform).
EVERY_VOUCHER = (OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM)


async def ensure_visible(
    request: Request,
    principal: Principal,
    voucher: Voucher,
    moment: datetime,
    every_voucher: tuple[str, ...] = EVERY_VOUCHER,
) -> None:
    """Who may see a voucher; everyone else hears `voucher_not_found` (its existence is not revealed).

    - the roles in `every_voucher` (by default officers, approvers, administrators, auditors
      and the data platform): every voucher;
    - an applicant: the vouchers its organisation holds;
    - a vendor: the vouchers it may redeem, by the redemption path's own rule: a voucher that
      names its vendor (M3: the contract's model vendor) only that vendor; a voucher that
      names none (M1) a vendor its holder authorised (authorisations.py) that is a registered
      compute vendor not affiliated with the holder, as the registry says on the day (the
      same cached check as a redemption).
    """
    if principal.has(*every_voucher):
        return
    if principal.applicant is not None and principal.applicant == voucher.holder:
        return
    vendor = principal.vendor
    if vendor is not None:
        if voucher.vendor is not None:
            if voucher.vendor == vendor:
                return
        elif await _authorised(request, voucher.id, vendor):
            check = await _compute_vendor_check(request, vendor, voucher.holder, moment)
            if check.is_compute_vendor and not check.affiliated:
                return
    raise ProblemError(VOUCHER_NOT_FOUND, code=voucher.code)
