"""Reading the facts of one application in one read-only snapshot, with the record reads of `records.py`.

The transaction is REPEATABLE READ and READ ONLY (its first statement says so): every read below sees
the same committed state, so the organisation, its revenues and a vendor cannot come from either side
of an import. A session nested in an enclosing transaction (a savepoint: the tests' rollback client)
cannot change its isolation and reads in the enclosing one's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ..records import all_records, find_record
from ..resources import AFFILIATIONS, FILINGS, MODELS, ORGANISATIONS, RECOGNITIONS, REVENUES, VENDORS
from .schemas import FactsQuery, FactsRead

SNAPSHOT = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


async def begin_snapshot(session: AsyncSession) -> None:
    connection = await session.connection()
    if not connection.in_nested_transaction():
        await session.execute(SNAPSHOT)


async def read_facts(session: AsyncSession, query: FactsQuery) -> FactsRead:
    await begin_snapshot(session)
    code, day = query.credit_code, query.as_of
    organisation = await find_record(session, ORGANISATIONS, {"credit_code": code}, as_of=day)
    facts = FactsRead(credit_code=code, as_of=day, organisation=organisation)
    if organisation is None:
        return facts
    if query.revenues:
        facts.revenues = await all_records(session, REVENUES, {"credit_code": code}, as_of=day)
    if query.affiliations:
        facts.affiliations = await all_records(session, AFFILIATIONS, {"organisation": code, "active": True}, as_of=day)
    if query.vendor_codes:
        facts.vendors = {
            vendor: await find_record(session, VENDORS, {"credit_code": vendor}, as_of=day)
            for vendor in sorted(set(query.vendor_codes))
        }
    if query.recognitions:
        facts.recognitions = await all_records(session, RECOGNITIONS, {"credit_code": code}, as_of=day)
    if query.recognition_ids:
        facts.recognitions_by_id = {
            str(rid): await find_record(session, RECOGNITIONS, {"id": rid}, as_of=day)
            for rid in sorted(set(query.recognition_ids), key=str)
        }
    if query.model_id is not None:
        facts.model = await find_record(session, MODELS, {"id": query.model_id}, as_of=day)
        if facts.model is not None:
            of_model: dict[str, Any] = {"model_id": query.model_id}
            if query.filings_on is not None:
                facts.filings = await all_records(session, FILINGS, of_model, as_of=query.filings_on)
            if query.filings_on_as_of:
                facts.filings_on_as_of = await all_records(session, FILINGS, of_model, as_of=day)
    if query.ranked_models:
        models = await all_records(session, MODELS, {}, as_of=day)
        facts.ranked_models = [model for model in models if model.national_filing_date is not None]
    return facts
