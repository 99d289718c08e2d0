"""Settlement batches (create, close, read) and the statements of vouchers, enterprises and vendors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.context import request_id_var
from shared.errors import ProblemError
from shared.instants import local_today
from shared.pagination import Page, PageParams, decode_cursor, encode_cursor, make_page

from .. import events
from ..issuance import repository as ledger
from ..issuance import service as vouchers
from ..models import Entry, SettlementBatch, Voucher
from ..schemas import AllowanceRead, GrantRead
from . import repository
from .deps import BUREAU
from .errors import (
    NOTHING_TO_SETTLE,
    SELF_SETTLEMENT,
    SETTLEMENT_BATCH_CLOSED,
    SETTLEMENT_BATCH_NOT_FOUND,
    STATEMENT_NOT_FOUND,
)
from .schemas import (
    AccountRef,
    BatchCreate,
    BatchRead,
    BatchRedemption,
    BatchStatus,
    EnterpriseStatement,
    KindTotals,
    RedemptionStatus,
    StatementLine,
    StatusTotal,
    VendorRedemption,
    VendorStatement,
    VoucherLine,
    VoucherStatement,
)

# --- settlement --------------------------------------------------------------------------------


def batch_read(batch: SettlementBatch) -> BatchRead:
    return BatchRead.model_validate(batch, from_attributes=True)


async def create_batch(
    session: AsyncSession, payload: BatchCreate, actor: str, now: datetime, client_id: str
) -> SettlementBatch:
    vendor = payload.vendor
    await repository.lock_vendor(session, vendor)
    rows = await repository.unbatched_captured(session, vendor)
    if not rows:
        raise ProblemError(NOTHING_TO_SETTLE, vendor=vendor)
    ids = [int(row.id) for row in rows]
    batch = SettlementBatch(
        vendor=vendor,
        status="open",
        total_fen=sum(int(row.amount_fen) for row in rows),
        redemption_count=len(ids),
        created_by=actor,
        created_by_client=client_id,
        created_at=now,
    )
    await repository.add(session, batch)
    joined = await repository.join_batch(session, batch.id, ids)
    if joined != len(ids):  # cannot happen: the rows are locked and the vendor's batcher is us
        raise RuntimeError(f"settlement batch {batch.id}: {joined} of {len(ids)} redemptions joined")
    await events.settlement_batch_changed(session, "created", batch_read(batch).model_dump(mode="json"))
    return batch


async def get_batch(session: AsyncSession, batch_id: int, *, lock: bool = False) -> SettlementBatch:
    batch = await repository.find_batch(session, batch_id, lock=lock)
    if batch is None:
        raise ProblemError(SETTLEMENT_BATCH_NOT_FOUND, id=batch_id)
    return batch


def _own_batch(batch: SettlementBatch, actor: str, client_id: str) -> bool:
    """Was the batch created by this client (a batch from before its creator's client was kept: by this name)?"""
    if batch.created_by_client is not None:
        return batch.created_by_client == client_id
    return batch.created_by == actor


async def close_batch(
    session: AsyncSession, batch_id: int, actor: str, now: datetime, client_id: str
) -> SettlementBatch:
    batch = await get_batch(session, batch_id, lock=True)
    if batch.status == "closed":
        assert batch.closed_at is not None
        raise ProblemError(
            SETTLEMENT_BATCH_CLOSED, id=batch.id, closed_by=batch.closed_by, closed_at=batch.closed_at.isoformat()
        )
    if _own_batch(batch, actor, client_id):  # four eyes: who gathered what is to be paid does not also pay it
        raise ProblemError(SELF_SETTLEMENT, id=batch.id, actor=actor)
    receivable = await ledger.account(session, "vendor_receivable", batch.vendor)
    settled = await ledger.account(session, "settled", batch.vendor)
    entry = Entry(
        kind="settle",
        from_account_id=receivable,
        to_account_id=settled,
        amount_fen=batch.total_fen,
        actor=actor,
        request_id=request_id_var.get(),
        memo=f"settlement batch {batch.id}: {batch.redemption_count} redemptions",
    )
    await repository.add(session, entry)
    batch.status = "closed"
    batch.closed_by = actor
    batch.closed_at = now
    batch.entry_id = entry.id
    await repository.flush(session)
    await events.settlement_batch_changed(session, "closed", batch_read(batch).model_dump(mode="json"))
    return batch


async def batch_redemptions(
    session: AsyncSession, batch_id: int, page: PageParams
) -> tuple[list[BatchRedemption], str | None]:
    after = decode_cursor("settlement-batch-redemptions", page.cursor) if page.cursor else 0
    rows = await repository.batch_redemptions(session, batch_id, after, page.limit + 1)
    items = [BatchRedemption.model_validate(dict(row._mapping)) for row in rows]
    listed = make_page("settlement-batch-redemptions", items, page.limit, lambda r: r.id)
    return listed.items, listed.next_cursor


async def list_batches(
    session: AsyncSession,
    principal: Principal,
    page: PageParams,
    vendor: str | None,
    status: BatchStatus | None,
) -> Page[BatchRead]:
    after = decode_cursor("settlement-batches", page.cursor) if page.cursor else 0
    rows = await repository.batches(
        session,
        after,
        page.limit + 1,
        own_vendor=principal.vendor,
        vendor=vendor,
        status=status,
        all_vendors=principal.has(*BUREAU),
    )
    return make_page("settlement-batches", [batch_read(b) for b in rows], page.limit, lambda b: b.id)


# --- statements ----------------------------------------------------------------------------------


def _statement_line(row: Any) -> StatementLine:
    values = dict(row._mapping)
    values["from_account"] = AccountRef(kind=values.pop("from_kind"), ref=values.pop("from_ref"))
    values["to_account"] = AccountRef(kind=values.pop("to_kind"), ref=values.pop("to_ref"))
    return StatementLine.model_validate(values)


async def voucher_statement(
    session: AsyncSession, voucher: Voucher, moment: datetime, page: PageParams
) -> VoucherStatement:
    after = decode_cursor("voucher-statement", page.cursor) if page.cursor else 0
    rows = await repository.voucher_lines(session, voucher.account_id, voucher.hold_account_id, after, page.limit + 1)
    listed = make_page("voucher-statement", [_statement_line(r) for r in rows], page.limit, lambda line: line.entry_id)
    return VoucherStatement(
        voucher=vouchers.voucher_read(voucher, local_today(moment)), items=listed.items, next_cursor=listed.next_cursor
    )


def own_statement(principal: Principal, credit_code: str, bound_to: str | None) -> None:
    """The bureau reads every statement; an applicant or vendor client only its organisation's."""
    if not principal.has(*BUREAU) and credit_code != bound_to:
        raise ProblemError(STATEMENT_NOT_FOUND, credit_code=credit_code)


def _fen(value: Any) -> int:
    return int(value or 0)


async def enterprise_statement(
    session: AsyncSession, credit_code: str, year: int, moment: datetime, page: PageParams
) -> EnterpriseStatement:
    today = local_today(moment)
    after = decode_cursor("enterprise-statement", page.cursor) if page.cursor else 0
    found = await repository.enterprise_vouchers(session, credit_code, year, after, page.limit + 1)
    has_more = len(found) > page.limit
    listed = found[: page.limit]
    lines = [
        VoucherLine.model_validate(
            {
                **{f: getattr(v, f) for f in VoucherLine.model_fields if f != "state"},
                "state": vouchers.state_of(v, today),
            }
        )
        for v in listed
    ]
    # keyed by the voucher's id, which the line does not show
    cursor = encode_cursor("enterprise-statement", listed[-1].id) if has_more and listed else None
    totals = await repository.enterprise_totals(session, credit_code, year)
    in_year = await repository.redeemed_in_year(session, credit_code, year)
    by_kind = []
    for kind in ("M1", "M3"):
        stored: dict[str, Any] = totals[kind]._asdict() if kind in totals else {}
        made: dict[str, Any] = in_year[kind]._asdict() if kind in in_year else {}
        values = {
            name: _fen(stored.get(name)) for name in KindTotals.model_fields if name.endswith(("_fen", "vouchers"))
        }
        values |= {"redeemed_in_year_fen": _fen(made.get("captured")), "held_in_year_fen": _fen(made.get("held"))}
        by_kind.append(KindTotals.model_validate({**values, "kind": kind}))
    ceilings = [
        AllowanceRead(
            holder=a.holder,
            year=a.year,
            kind=a.kind,
            clause=a.clause,
            limit_fen=a.limit_fen,
            used_fen=a.used_fen,
            headroom_fen=a.limit_fen - a.used_fen,
        )
        for a in await repository.allowances(session, credit_code, year)
    ]
    grants = [
        GrantRead.model_validate(g, from_attributes=True) for g in await repository.grants(session, credit_code, year)
    ]
    return EnterpriseStatement(
        holder=credit_code,
        year=year,
        claimed_fen=sum(k.claimed_fen for k in by_kind),
        redeemed_fen=sum(k.redeemed_fen for k in by_kind),
        redeemed_in_year_fen=sum(k.redeemed_in_year_fen for k in by_kind),
        by_kind=by_kind,
        ceilings=ceilings,
        grants=grants,
        grants_fen=sum(g.amount_fen for g in grants),
        items=lines,
        next_cursor=cursor,
    )


async def vendor_statement(
    session: AsyncSession, credit_code: str, page: PageParams, status: RedemptionStatus | None
) -> VendorStatement:
    after = decode_cursor("vendor-statement", page.cursor) if page.cursor else 0
    rows = await repository.vendor_redemptions(session, credit_code, after, page.limit + 1, status)
    listed = make_page(
        "vendor-statement",
        [VendorRedemption.model_validate(dict(row._mapping)) for row in rows],
        page.limit,
        lambda r: r.id,
    )
    by_status = {
        row.status: StatusTotal(count=row.n, amount_fen=_fen(row.amount_fen))
        for row in await repository.vendor_redemption_totals(session, credit_code)
    }
    batches = {
        row.status: StatusTotal(count=row.n, amount_fen=_fen(row.amount_fen))
        for row in await repository.vendor_batch_totals(session, credit_code)
    }
    unbatched = await repository.unbatched_fen(session, credit_code)
    none = StatusTotal(count=0, amount_fen=0)
    return VendorStatement(
        vendor=credit_code,
        redemptions={s: by_status.get(s, none) for s in ("captured", "held", "released", "expired")},
        unbatched_fen=_fen(unbatched),
        receivable_fen=_fen(await repository.balance(session, "vendor_receivable", credit_code)),
        settled_fen=_fen(await repository.balance(session, "settled", credit_code)),
        batches={s: batches.get(s, none) for s in ("open", "closed")},
        items=listed.items,
        next_cursor=listed.next_cursor,
    )
