"""Settlement batches and statements (issue #4).

**Settlement.** `POST /v1/settlement-batches` gathers a vendor's captured redemptions that
are in no batch yet into a new, open batch; `POST /v1/settlement-batches/{id}/close`
closes it and, in the same transaction, writes the one `settle` entry moving the batch
total from the vendor's `vendor_receivable` account to its `settled` account (ref: the
vendor's credit code). Batch creation is serialised per vendor (a transaction-scoped
advisory lock), and the rows are locked `FOR UPDATE SKIP LOCKED` in id order, so the
redemption path is never waited on and two simultaneous requests never share a row: one
gets the batch, the other `nothing_to_settle`. The database holds the rules on its own
(migration 0003): a redemption's `settlement_batch_id` is set once, only when captured,
only to an open batch of the same vendor; a batch's redemptions add up to its total; a
batch is closed only with its matching `settle` entry; a closed batch never changes; no
batch is deleted.

**Statements** (all with `?limit=` / `?cursor=`; the header is computed over everything,
the page lists `items`):

- a voucher: its entries in order with running available / held / redeemed / returned;
- an enterprise and year: the vouchers the ledger counts in that year (M3: the claim
  year; M1: the benefit year, the year its class cap counts against), claimed and
  redeemed totals per kind, redemptions made in that calendar year (what the M3 ceiling
  counts), the ceilings (limit, used, headroom) and the grants of that year;
- a vendor: its redemptions (any status), receivable balance, settled total, batches.

**Who sees what.** Officers and administrators create and close batches (the token's client
is the actor recorded); officers, approvers, administrators and auditors read batches and
every statement. A vendor client reads only its own batches and its own statement; an
applicant only the statements of its own enterprise and vouchers. Anything else answers
404 (`settlement_batch_not_found`, `voucher_not_found`, `statement_not_found`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import BigInteger, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, APPLICANT, APPROVER, AUDITOR, OFFICER, VENDOR, Principal, require
from shared.context import request_id_var
from shared.db import SessionDep
from shared.errors import ErrorCode, ProblemError
from shared.identifiers import CreditCode
from shared.pagination import Page, PageParams, decode_cursor, encode_cursor, make_page, page_params

from . import events, service
from .deps import VoucherCode
from .endpoints import Now, ensure_visible
from .errors import STATEMENT_NOT_FOUND
from .hotpath import local_today
from .models import Account, Allowance, Entry, Grant, Redemption, SettlementBatch, Voucher
from .schemas import AllowanceRead, GrantRead, Input, VoucherRead

router = APIRouter()
Pages = Annotated[PageParams, Depends(page_params)]
BatchId = Annotated[int, Path(ge=1, le=2**62)]
BatchStatus = Literal["open", "closed"]
RedemptionStatus = Literal["captured", "held", "released", "expired"]
VendorPath = Annotated[CreditCode, Path(description="The vendor's credit code")]
#: The bureau's readers: every batch and every statement (a vendor or applicant only its own).
BUREAU = (OFFICER, APPROVER, ADMIN, AUDITOR)
#: Creating and closing batches.
Settler = Annotated[Principal, require(OFFICER, ADMIN)]
#: Reading batches: the bureau, and a vendor its own.
BatchReader = Annotated[Principal, require(*BUREAU, VENDOR)]
#: A voucher's or an enterprise's statement: the bureau, and the applicant its own.
HolderReader = Annotated[Principal, require(APPLICANT, *BUREAU)]
#: A vendor's statement: the bureau, and the vendor its own.
VendorReader = Annotated[Principal, require(VENDOR, *BUREAU)]

# --- error codes (stable; vendors' and the treasury's systems match on `code`) ---------------

SETTLEMENT_BATCH_NOT_FOUND = ErrorCode(
    "settlement_batch_not_found", 404, "结算批次不存在：{id}", "No such settlement batch: {id}"
)
NOTHING_TO_SETTLE = ErrorCode(
    "nothing_to_settle",
    409,
    "供应商 {vendor} 没有待结算的已确认兑付，未创建结算批次",
    "Vendor {vendor} has no captured redemptions awaiting settlement: no batch was created",
)
SETTLEMENT_BATCH_CLOSED = ErrorCode(
    "settlement_batch_closed",
    409,
    "结算批次 {id} 已由 {closed_by} 于 {closed_at} 关闭，不能再更改",
    "Settlement batch {id} was closed by {closed_by} at {closed_at}: it cannot change",
)

# --- payloads --------------------------------------------------------------------------------


class BatchCreate(Input):
    """The officer who creates the batch is the caller (its token)."""

    vendor: CreditCode


class BatchRead(BaseModel):
    id: int
    vendor: str
    status: BatchStatus
    total_fen: int
    redemption_count: int
    created_by: str
    created_at: datetime
    closed_by: str | None
    closed_at: datetime | None
    entry_id: int | None


class BatchRedemption(BaseModel):
    id: int
    voucher_code: str
    amount_fen: int
    invoice_number: str
    contract_number: str | None
    year: int
    created_at: datetime
    updated_at: datetime


class BatchDetail(Page[BatchRedemption]):
    """The batch, and a page of its redemptions as `items`."""

    batch: BatchRead


class AccountRef(BaseModel):
    kind: str
    ref: str


class StatementLine(BaseModel):
    entry_id: int
    kind: str
    amount_fen: int
    from_account: AccountRef
    to_account: AccountRef
    created_at: datetime
    redemption_id: int | None
    invoice_number: str | None
    actor: str | None
    memo: str | None
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int


class VoucherStatement(Page[StatementLine]):
    """The voucher now, and a page of its entries (oldest first) with the balances after each."""

    voucher: VoucherRead


class VoucherLine(BaseModel):
    code: str
    kind: Literal["M1", "M3"]
    state: str
    vendor: str | None
    amount_fen: int
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int
    issued_at: datetime
    valid_until: date


class KindTotals(BaseModel):
    kind: Literal["M1", "M3"]
    vouchers: int
    claimed_fen: int
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int
    #: redemptions made in the statement's calendar year, of vouchers of any year (M3-7)
    redeemed_in_year_fen: int
    held_in_year_fen: int


class EnterpriseStatement(Page[VoucherLine]):
    holder: str
    year: int
    claimed_fen: int
    redeemed_fen: int
    redeemed_in_year_fen: int
    by_kind: list[KindTotals]
    ceilings: list[AllowanceRead]
    grants: list[GrantRead]
    grants_fen: int


class VendorRedemption(BaseModel):
    id: int
    voucher_code: str
    voucher_kind: str
    amount_fen: int
    invoice_number: str
    contract_number: str | None
    status: RedemptionStatus
    year: int
    hold_expires_at: datetime | None
    settlement_batch_id: int | None
    created_at: datetime
    updated_at: datetime


class StatusTotal(BaseModel):
    count: int
    amount_fen: int


class VendorStatement(Page[VendorRedemption]):
    vendor: str
    redemptions: dict[RedemptionStatus, StatusTotal]
    #: captured, in no batch yet
    unbatched_fen: int
    receivable_fen: int
    settled_fen: int
    batches: dict[BatchStatus, StatusTotal]


# --- settlement --------------------------------------------------------------------------------


def batch_read(batch: SettlementBatch) -> BatchRead:
    return BatchRead.model_validate(batch, from_attributes=True)


async def create_batch(session: AsyncSession, payload: BatchCreate, actor: str, now: datetime) -> SettlementBatch:
    vendor = payload.vendor
    # one batcher per vendor at a time; the redemption path is never waited on (SKIP LOCKED)
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext("settle:" + vendor))))
    rows = (
        await session.execute(
            select(Redemption.id, Redemption.amount_fen)
            .where(
                Redemption.vendor == vendor,
                Redemption.status == "captured",
                Redemption.settlement_batch_id.is_(None),
            )
            .order_by(Redemption.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        raise ProblemError(NOTHING_TO_SETTLE, vendor=vendor)
    ids = [int(row.id) for row in rows]
    batch = SettlementBatch(
        vendor=vendor,
        status="open",
        total_fen=sum(int(row.amount_fen) for row in rows),
        redemption_count=len(ids),
        created_by=actor,
        created_at=now,
    )
    session.add(batch)
    await session.flush()
    joined = (
        await session.execute(
            update(Redemption)
            .where(
                Redemption.id == func.any(bindparam("ids", ids, type_=ARRAY(BigInteger))),
                Redemption.settlement_batch_id.is_(None),
            )
            .values(settlement_batch_id=batch.id)
            .returning(Redemption.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if len(joined) != len(ids):  # cannot happen: the rows are locked and the vendor's batcher is us
        raise RuntimeError(f"settlement batch {batch.id}: {len(joined)} of {len(ids)} redemptions joined")
    await events.settlement_batch_changed(session, "created", batch_read(batch).model_dump(mode="json"))
    return batch


async def get_batch(session: AsyncSession, batch_id: int, *, lock: bool = False) -> SettlementBatch:
    statement = select(SettlementBatch).where(SettlementBatch.id == batch_id)
    if lock:
        statement = statement.with_for_update()
    batch = (await session.execute(statement)).scalar_one_or_none()
    if batch is None:
        raise ProblemError(SETTLEMENT_BATCH_NOT_FOUND, id=batch_id)
    return batch


async def close_batch(session: AsyncSession, batch_id: int, actor: str, now: datetime) -> SettlementBatch:
    batch = await get_batch(session, batch_id, lock=True)
    if batch.status == "closed":
        assert batch.closed_at is not None
        raise ProblemError(
            SETTLEMENT_BATCH_CLOSED, id=batch.id, closed_by=batch.closed_by, closed_at=batch.closed_at.isoformat()
        )
    receivable = await service.account(session, "vendor_receivable", batch.vendor)
    settled = await service.account(session, "settled", batch.vendor)
    entry = Entry(
        kind="settle",
        from_account_id=receivable,
        to_account_id=settled,
        amount_fen=batch.total_fen,
        actor=actor,
        request_id=request_id_var.get(),
        memo=f"settlement batch {batch.id}: {batch.redemption_count} redemptions",
    )
    session.add(entry)
    await session.flush()
    batch.status = "closed"
    batch.closed_by = actor
    batch.closed_at = now
    batch.entry_id = entry.id
    await session.flush()
    await events.settlement_batch_changed(session, "closed", batch_read(batch).model_dump(mode="json"))
    return batch


async def batch_redemptions(
    session: AsyncSession, batch_id: int, page: PageParams
) -> tuple[list[BatchRedemption], str | None]:
    after = decode_cursor("settlement-batch-redemptions", page.cursor) if page.cursor else 0
    rows = (
        await session.execute(
            select(
                Redemption.id,
                Voucher.code.label("voucher_code"),
                Redemption.amount_fen,
                Redemption.invoice_number,
                Redemption.contract_number,
                Redemption.year,
                Redemption.created_at,
                Redemption.updated_at,
            )
            .join(Voucher, Voucher.id == Redemption.voucher_id)
            .where(Redemption.settlement_batch_id == batch_id, Redemption.id > after)
            .order_by(Redemption.id)
            .limit(page.limit + 1)
        )
    ).all()
    items = [BatchRedemption.model_validate(dict(row._mapping)) for row in rows]
    listed = make_page("settlement-batch-redemptions", items, page.limit, lambda r: r.id)
    return listed.items, listed.next_cursor


@router.post(
    "/v1/settlement-batches",
    status_code=201,
    response_model=BatchRead,
    tags=["settlement"],
    summary="Gather a vendor's captured, unsettled redemptions into a new open batch",
)
async def create_settlement_batch(
    session: SessionDep, moment: Now, principal: Settler, payload: BatchCreate, response: Response
) -> BatchRead:
    batch = await create_batch(session, payload, principal.actor, moment)
    response.headers["Location"] = f"/v1/settlement-batches/{batch.id}"
    return batch_read(batch)


@router.post(
    "/v1/settlement-batches/{batch_id}/close",
    response_model=BatchRead,
    tags=["settlement"],
    summary="Close a batch: one `settle` entry moves its total from the vendor's receivable to settled",
)
async def close_settlement_batch(session: SessionDep, moment: Now, principal: Settler, batch_id: BatchId) -> BatchRead:
    return batch_read(await close_batch(session, batch_id, principal.actor, moment))


@router.get(
    "/v1/settlement-batches/{batch_id}",
    response_model=BatchDetail,
    tags=["settlement"],
    summary="A batch, with a page of its redemptions",
)
async def get_settlement_batch(
    session: SessionDep, principal: BatchReader, batch_id: BatchId, page: Pages
) -> BatchDetail:
    batch = await get_batch(session, batch_id)
    if not principal.has(*BUREAU) and batch.vendor != principal.vendor:
        raise ProblemError(SETTLEMENT_BATCH_NOT_FOUND, id=batch_id)
    items, cursor = await batch_redemptions(session, batch_id, page)
    return BatchDetail(batch=batch_read(batch), items=items, next_cursor=cursor)


@router.get(
    "/v1/settlement-batches",
    response_model=Page[BatchRead],
    tags=["settlement"],
    summary="Settlement batches, oldest first (a vendor client: its own)",
)
async def list_settlement_batches(
    session: SessionDep,
    principal: BatchReader,
    page: Pages,
    vendor: Annotated[CreditCode | None, Query()] = None,
    status: BatchStatus | None = None,
) -> Page[BatchRead]:
    after = decode_cursor("settlement-batches", page.cursor) if page.cursor else 0
    statement = select(SettlementBatch).where(SettlementBatch.id > after)
    if not principal.has(*BUREAU):
        statement = statement.where(SettlementBatch.vendor == principal.vendor)
    if vendor is not None:
        statement = statement.where(SettlementBatch.vendor == vendor)
    if status is not None:
        statement = statement.where(SettlementBatch.status == status)
    rows = (await session.execute(statement.order_by(SettlementBatch.id).limit(page.limit + 1))).scalars().all()
    return make_page("settlement-batches", [batch_read(b) for b in rows], page.limit, lambda b: b.id)


# --- statements ----------------------------------------------------------------------------------

VOUCHER_LINES = text(
    """
    WITH lines AS (
        SELECT e.id AS entry_id, e.kind, e.amount_fen, e.created_at, e.redemption_id, e.actor, e.memo,
               fa.kind AS from_kind, fa.ref AS from_ref, ta.kind AS to_kind, ta.ref AS to_ref,
               r.invoice_number,
               sum(CASE WHEN e.to_account_id = :holding THEN e.amount_fen
                        WHEN e.from_account_id = :holding THEN -e.amount_fen ELSE 0 END) OVER w AS available_fen,
               sum(CASE WHEN e.to_account_id = :hold THEN e.amount_fen
                        WHEN e.from_account_id = :hold THEN -e.amount_fen ELSE 0 END) OVER w AS held_fen,
               sum(CASE WHEN e.kind IN ('redeem', 'capture') THEN e.amount_fen ELSE 0 END) OVER w AS redeemed_fen,
               sum(CASE WHEN e.kind IN ('void', 'expire') THEN e.amount_fen ELSE 0 END) OVER w AS returned_fen
        FROM vouchers.entries e
        JOIN vouchers.accounts fa ON fa.id = e.from_account_id
        JOIN vouchers.accounts ta ON ta.id = e.to_account_id
        LEFT JOIN vouchers.redemptions r ON r.id = e.redemption_id
        WHERE e.from_account_id IN (:holding, :hold) OR e.to_account_id IN (:holding, :hold)
        WINDOW w AS (ORDER BY e.id))
    SELECT * FROM lines WHERE entry_id > :after ORDER BY entry_id LIMIT :limit
    """
)


def _statement_line(row: Any) -> StatementLine:
    values = dict(row._mapping)
    values["from_account"] = AccountRef(kind=values.pop("from_kind"), ref=values.pop("from_ref"))
    values["to_account"] = AccountRef(kind=values.pop("to_kind"), ref=values.pop("to_ref"))
    return StatementLine.model_validate(values)


@router.get(
    "/v1/vouchers/{code}/statement",
    response_model=VoucherStatement,
    tags=["statements"],
    summary="A voucher's entries in order, with the running available, held, redeemed and returned amounts",
)
async def voucher_statement(
    request: Request, session: SessionDep, moment: Now, principal: HolderReader, code: VoucherCode, page: Pages
) -> VoucherStatement:
    voucher = await service.get_voucher(session, code)
    await session.commit()  # only read: no connection is held while the registry may be asked (issue #12)
    await ensure_visible(request, principal, voucher, moment, BUREAU)
    after = decode_cursor("voucher-statement", page.cursor) if page.cursor else 0
    rows = (
        await session.execute(
            VOUCHER_LINES,
            {"holding": voucher.account_id, "hold": voucher.hold_account_id, "after": after, "limit": page.limit + 1},
        )
    ).all()
    listed = make_page("voucher-statement", [_statement_line(r) for r in rows], page.limit, lambda line: line.entry_id)
    return VoucherStatement(
        voucher=service.voucher_read(voucher, local_today(moment)), items=listed.items, next_cursor=listed.next_cursor
    )


def _own_statement(principal: Principal, credit_code: str, bound_to: str | None) -> None:
    """The bureau reads every statement; an applicant or vendor client only its organisation's."""
    if not principal.has(*BUREAU) and credit_code != bound_to:
        raise ProblemError(STATEMENT_NOT_FOUND, credit_code=credit_code)


def _fen(value: Any) -> int:
    return int(value or 0)


@router.get(
    "/v1/enterprises/{credit_code}/years/{year}/statement",
    response_model=EnterpriseStatement,
    tags=["statements"],
    summary="An enterprise's year: vouchers and their totals, redemptions in the year, ceilings, grants",
)
async def enterprise_statement(
    session: SessionDep,
    moment: Now,
    principal: HolderReader,
    credit_code: Annotated[CreditCode, Path(description="The enterprise's credit code")],
    year: Annotated[int, Path(ge=2000, le=2100)],
    page: Pages,
) -> EnterpriseStatement:
    _own_statement(principal, credit_code, principal.applicant)
    today = local_today(moment)
    after = decode_cursor("enterprise-statement", page.cursor) if page.cursor else 0
    of_year = (Voucher.holder == credit_code, Voucher.year == year)
    vouchers = (
        (
            await session.execute(
                select(Voucher).where(*of_year, Voucher.id > after).order_by(Voucher.id).limit(page.limit + 1)
            )
        )
        .scalars()
        .all()
    )
    has_more = len(vouchers) > page.limit
    vouchers = vouchers[: page.limit]
    lines = [
        VoucherLine.model_validate(
            {
                **{f: getattr(v, f) for f in VoucherLine.model_fields if f != "state"},
                "state": service.state_of(v, today),
            }
        )
        for v in vouchers
    ]
    # keyed by the voucher's id, which the line does not show
    cursor = encode_cursor("enterprise-statement", vouchers[-1].id) if has_more and vouchers else None
    totals = {
        row.kind: row
        for row in (
            await session.execute(
                select(
                    Voucher.kind,
                    func.count().label("vouchers"),
                    func.sum(Voucher.amount_fen).label("claimed_fen"),
                    func.sum(Voucher.available_fen).label("available_fen"),
                    func.sum(Voucher.held_fen).label("held_fen"),
                    func.sum(Voucher.redeemed_fen).label("redeemed_fen"),
                    func.sum(Voucher.returned_fen).label("returned_fen"),
                )
                .where(*of_year)
                .group_by(Voucher.kind)
            )
        ).all()
    }
    in_year = {
        row.kind: row
        for row in (
            await session.execute(
                select(
                    Voucher.kind,
                    func.sum(Redemption.amount_fen).filter(Redemption.status == "captured").label("captured"),
                    func.sum(Redemption.amount_fen).filter(Redemption.status == "held").label("held"),
                )
                .join(Voucher, Voucher.id == Redemption.voucher_id)
                .where(Voucher.holder == credit_code, Redemption.year == year)
                .group_by(Voucher.kind)
            )
        ).all()
    }
    by_kind = []
    for kind in ("M1", "M3"):
        stored: dict[str, Any] = totals[kind]._asdict() if kind in totals else {}
        made: dict[str, Any] = in_year[kind]._asdict() if kind in in_year else {}
        values = {
            name: _fen(stored.get(name)) for name in KindTotals.model_fields if name.endswith(("_fen", "vouchers"))
        }
        values |= {"redeemed_in_year_fen": _fen(made.get("captured")), "held_in_year_fen": _fen(made.get("held"))}
        by_kind.append(KindTotals.model_validate({**values, "kind": kind}))
    allowances = (
        (
            await session.execute(
                select(Allowance)
                .where(Allowance.holder == credit_code, Allowance.year == year)
                .order_by(Allowance.kind)
            )
        )
        .scalars()
        .all()
    )
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
        for a in allowances
    ]
    grants = [
        GrantRead.model_validate(g, from_attributes=True)
        for g in (
            await session.execute(
                select(Grant).where(Grant.holder == credit_code, Grant.year == year).order_by(Grant.id)
            )
        )
        .scalars()
        .all()
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


async def _balance(session: AsyncSession, kind: str, ref: str) -> int:
    """An account's balance from its entries (Σ in − Σ out); 0 for an account not yet opened."""
    account = select(Account.id).where(Account.kind == kind, Account.ref == ref).scalar_subquery()
    incoming = select(func.coalesce(func.sum(Entry.amount_fen), 0)).where(Entry.to_account_id == account)
    outgoing = select(func.coalesce(func.sum(Entry.amount_fen), 0)).where(Entry.from_account_id == account)
    return _fen(await session.scalar(select(incoming.scalar_subquery() - outgoing.scalar_subquery())))


@router.get(
    "/v1/vendors/{credit_code}/statement",
    response_model=VendorStatement,
    tags=["statements"],
    summary="A vendor's redemptions, receivable balance, settled total and batches",
)
async def vendor_statement(
    session: SessionDep,
    principal: VendorReader,
    credit_code: VendorPath,
    page: Pages,
    status: RedemptionStatus | None = None,
) -> VendorStatement:
    _own_statement(principal, credit_code, principal.vendor)
    after = decode_cursor("vendor-statement", page.cursor) if page.cursor else 0
    statement = (
        select(
            Redemption.id,
            Voucher.code.label("voucher_code"),
            Voucher.kind.label("voucher_kind"),
            Redemption.amount_fen,
            Redemption.invoice_number,
            Redemption.contract_number,
            Redemption.status,
            Redemption.year,
            Redemption.hold_expires_at,
            Redemption.settlement_batch_id,
            Redemption.created_at,
            Redemption.updated_at,
        )
        .join(Voucher, Voucher.id == Redemption.voucher_id)
        .where(Redemption.vendor == credit_code, Redemption.id > after)
    )
    if status is not None:
        statement = statement.where(Redemption.status == status)
    rows = (await session.execute(statement.order_by(Redemption.id).limit(page.limit + 1))).all()
    listed = make_page(
        "vendor-statement",
        [VendorRedemption.model_validate(dict(row._mapping)) for row in rows],
        page.limit,
        lambda r: r.id,
    )
    by_status = {
        row.status: StatusTotal(count=row.n, amount_fen=_fen(row.amount_fen))
        for row in (
            await session.execute(
                select(Redemption.status, func.count().label("n"), func.sum(Redemption.amount_fen).label("amount_fen"))
                .where(Redemption.vendor == credit_code)
                .group_by(Redemption.status)
            )
        ).all()
    }
    batches = {
        row.status: StatusTotal(count=row.n, amount_fen=_fen(row.amount_fen))
        for row in (
            await session.execute(
                select(
                    SettlementBatch.status,
                    func.count().label("n"),
                    func.sum(SettlementBatch.total_fen).label("amount_fen"),
                )
                .where(SettlementBatch.vendor == credit_code)
                .group_by(SettlementBatch.status)
            )
        ).all()
    }
    unbatched = await session.scalar(
        select(func.sum(Redemption.amount_fen)).where(
            Redemption.vendor == credit_code,
            Redemption.status == "captured",
            Redemption.settlement_batch_id.is_(None),
        )
    )
    none = StatusTotal(count=0, amount_fen=0)
    return VendorStatement(
        vendor=credit_code,
        redemptions={s: by_status.get(s, none) for s in ("captured", "held", "released", "expired")},
        unbatched_fen=_fen(unbatched),
        receivable_fen=await _balance(session, "vendor_receivable", credit_code),
        settled_fen=await _balance(session, "settled", credit_code),
        batches={s: batches.get(s, none) for s in ("open", "closed")},
        items=listed.items,
        next_cursor=listed.next_cursor,
    )
