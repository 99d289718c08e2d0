"""Bulk export of the ledger's entries for the data platform: `GET /v1/exports/ledger-entries`.

NDJSON or CSV, filtered by when an entry was written (`created_at`, half-open [from, to)),
streamed by `shared/exports/` (formats, date bounds, trailer and errors are described
there). Roles: platform, auditor, admin. Read-only, as the service's role (`vouchers_writer`).

**Not the chain export.** `GET /v1/ledger/export` (chain/) is the tamper-evidence export:
every *sealed* entry in seal order with its entry and chain hashes and the published
checkpoints, always the whole ledger, in a format frozen by the offline verifier
(`python -m services.vouchers.verify`). This one is for analysis: every committed entry,
sealed or not yet, in id order, flattened with its accounts' kinds and references (a
voucher code, a vendor's credit code, a budget `M3:2026`), filterable by date, kind and
voucher, as NDJSON or CSV. The two share no code on purpose: a change here must never
change what the verifier reads.

Columns (in this order): id, created_at, kind, amount_fen, from_account_id, from_kind,
from_ref, to_account_id, to_kind, to_ref, voucher_id, redemption_id, decision_id,
contract_ref, actor, parameters_digest, reverses_entry_id, request_id, memo.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from shared.auth import require
from shared.exports.params import EXPORT_RESPONSES, ExportOptions, export_options
from shared.exports.query import EXPORTERS, Column, ExportQuery
from shared.exports.stream import export_response

ENTRY_COLUMNS: tuple[Column, ...] = (
    Column("id", "e.id", "int"),
    Column("created_at", "e.created_at", "timestamp"),
    Column("kind", "e.kind"),
    Column("amount_fen", "e.amount_fen", "int"),
    Column("from_account_id", "e.from_account_id", "int"),
    Column("from_kind", "fa.kind"),
    Column("from_ref", "fa.ref"),
    Column("to_account_id", "e.to_account_id", "int"),
    Column("to_kind", "ta.kind"),
    Column("to_ref", "ta.ref"),
    Column("voucher_id", "e.voucher_id", "int"),
    Column("redemption_id", "e.redemption_id", "int"),
    Column("decision_id", "e.decision_id", "uuid"),
    Column("contract_ref", "e.contract_ref"),
    Column("actor", "e.actor"),
    Column("parameters_digest", "e.parameters_digest"),
    Column("reverses_entry_id", "e.reverses_entry_id", "int"),
    Column("request_id", "e.request_id"),
    Column("memo", "e.memo"),
)
ENTRY_SOURCE = (
    "vouchers.entries e "
    "JOIN vouchers.accounts fa ON fa.id = e.from_account_id "
    "JOIN vouchers.accounts ta ON ta.id = e.to_account_id"
)

router = APIRouter(tags=["exports"])


def entries_query(kind: str | None = None, voucher: str | None = None, after_id: int | None = None) -> ExportQuery:
    query = ExportQuery("ledger-entries", ENTRY_COLUMNS, ENTRY_SOURCE, order_by="e.id", time_column="e.created_at")
    query.filter("kind", kind, lambda p: f"e.kind = {p}")
    query.filter(
        "voucher", voucher, lambda p: f"e.voucher_id = (SELECT v.id FROM vouchers.vouchers v WHERE v.code = {p})"
    )
    query.filter("after_id", after_id, lambda p: f"e.id > {p}::bigint")
    return query


@router.get(
    "/v1/exports/ledger-entries",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
    dependencies=[require(*EXPORTERS)],
    summary="Export ledger entries (NDJSON or CSV, streamed), by created_at in [from, to)",
)
async def export_ledger_entries(
    request: Request,
    options: Annotated[ExportOptions, Depends(export_options)],
    kind: Annotated[
        str | None,
        Query(pattern=r"^[a-z_]{1,32}$", description="Entries of one kind: issue, redeem, hold, capture, settle, …"),
    ] = None,
    voucher: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Entries of one voucher (its code)")
    ] = None,
    after_id: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="Only entries with a larger id: resume an interrupted export"),
    ] = None,
) -> StreamingResponse:
    """Every committed entry in id order, with its accounts' kinds and references (module doc)."""
    query = entries_query(kind, voucher, after_id)
    return await export_response(request, query, options, filename_stem="vouchers-ledger-entries")
