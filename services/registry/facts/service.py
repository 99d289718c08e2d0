"""Reading the facts of one application in one read-only snapshot, with the as-of reads of `reads.py`
(what `records.py` `find_record` / `all_records` answer, a few fixed statements per call: issue #16).

The transaction is REPEATABLE READ and READ ONLY (its first statement says so): every read below sees
the same committed state, so the organisation, its revenues and a vendor cannot come from either side
of an import. A session nested in an enclosing transaction (a savepoint: the tests' rollback client)
cannot change its isolation and reads in the enclosing one's.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import raw_connection

from ..resources import AFFILIATIONS, FILINGS, MODELS, ORGANISATIONS, RECOGNITIONS, REVENUES, VENDORS
from .reads import all_as_of, find_by_keys
from .schemas import FactsQuery, FactsRead

SNAPSHOT = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


async def begin_snapshot(session: AsyncSession) -> None:
    connection = await session.connection()
    if not connection.in_nested_transaction():
        await session.execute(SNAPSHOT)


async def read_facts(session: AsyncSession, query: FactsQuery) -> FactsRead:
    await begin_snapshot(session)
    connection = await raw_connection(session)
    code, day = query.credit_code, query.as_of
    organisation = (await find_by_keys(connection, ORGANISATIONS, [code], day)).get(code)
    facts = FactsRead(credit_code=code, as_of=day, organisation=organisation)
    if organisation is None:
        return facts
    # the filters of `resources.py` on a snapshot, as JSON fragments it contains (`Filter.snapshot_clause`)
    of_code = [{"credit_code": code}]
    if query.revenues:
        facts.revenues = await all_as_of(connection, REVENUES, day, of_code)
    if query.affiliations:
        involving = [{"credit_code_a": code}, {"credit_code_b": code}]
        facts.affiliations = await all_as_of(connection, AFFILIATIONS, day, involving, [{"active": True}])
    if query.vendor_codes:
        codes = sorted(set(query.vendor_codes))
        vendors = await find_by_keys(connection, VENDORS, codes, day)
        facts.vendors = {vendor: vendors.get(vendor) for vendor in codes}
    if query.recognitions:
        facts.recognitions = await all_as_of(connection, RECOGNITIONS, day, of_code)
    if query.recognition_ids:
        ids = sorted(set(query.recognition_ids), key=str)
        found = await find_by_keys(connection, RECOGNITIONS, ids, day)
        facts.recognitions_by_id = {str(rid): found.get(str(rid)) for rid in ids}
    if query.model_id is not None:
        facts.model = (await find_by_keys(connection, MODELS, [query.model_id], day)).get(str(query.model_id))
        if facts.model is not None:
            of_model = [{"model_id": query.model_id}]
            if query.filings_on is not None:
                facts.filings = await all_as_of(connection, FILINGS, query.filings_on, of_model)
            if query.filings_on_as_of:
                facts.filings_on_as_of = await all_as_of(connection, FILINGS, day, of_model)
    if query.ranked_models:
        models = await all_as_of(connection, MODELS, day)
        facts.ranked_models = [model for model in models if model.national_filing_date is not None]
    return facts
