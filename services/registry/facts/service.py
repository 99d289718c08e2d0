"""Reading the facts of one application in one snapshot, with the as-of reads of `reads.py` (what `records.py`
`find_record` / `all_records` answer), all of them one statement: one round trip (issue #16), and every read
sees the same committed state, so the organisation, its revenues and a vendor cannot come from either side of
an import. Nothing is written, and no transaction is begun around the statement.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import raw_connection

from ..resources import AFFILIATIONS, FILINGS, MODELS, ORGANISATIONS, RECOGNITIONS, REVENUES, VENDORS
from .reads import Reads
from .schemas import FactsQuery, FactsRead


async def read_facts(session: AsyncSession, query: FactsQuery) -> FactsRead:
    code, day = query.credit_code, query.as_of
    reads = Reads()
    reads.by_keys("organisation", ORGANISATIONS, [code], day)
    # the filters of `resources.py` on a snapshot, as JSON fragments it contains (`Filter.snapshot_clause`)
    of_code = [{"credit_code": code}]
    if query.revenues:
        reads.as_of("revenues", REVENUES, day, of_code)
    if query.affiliations:
        reads.as_of(
            "affiliations", AFFILIATIONS, day, [{"credit_code_a": code}, {"credit_code_b": code}], [{"active": True}]
        )
    vendor_codes = sorted(set(query.vendor_codes))
    if vendor_codes:
        reads.by_keys("vendors", VENDORS, vendor_codes, day)
    if query.recognitions:
        reads.as_of("recognitions", RECOGNITIONS, day, of_code)
    recognition_ids = sorted(set(query.recognition_ids), key=str)
    if recognition_ids:
        reads.by_keys("recognitions_by_id", RECOGNITIONS, recognition_ids, day)
    if query.model_id is not None:
        reads.by_keys("model", MODELS, [query.model_id], day)
        of_model = [{"model_id": query.model_id}]
        if query.filings_on is not None:
            reads.as_of("filings", FILINGS, query.filings_on, of_model)
        if query.filings_on_as_of:
            reads.as_of("filings_on_as_of", FILINGS, day, of_model)
    if query.ranked_models:
        reads.as_of("ranked_models", MODELS, day)
    read = await reads.fetch(await raw_connection(session))

    facts = FactsRead(credit_code=code, as_of=day, organisation=read["organisation"].by_key.get(code))
    if facts.organisation is None:  # nothing else is answered about an organisation with no record on the date
        return facts
    if query.revenues:
        facts.revenues = read["revenues"].records
    if query.affiliations:
        facts.affiliations = read["affiliations"].records
    if query.vendor_codes:
        facts.vendors = {vendor: read["vendors"].by_key.get(vendor) for vendor in vendor_codes}
    if query.recognitions:
        facts.recognitions = read["recognitions"].records
    if query.recognition_ids:
        facts.recognitions_by_id = {
            str(rid): read["recognitions_by_id"].by_key.get(str(rid)) for rid in recognition_ids
        }
    if query.model_id is not None:
        facts.model = read["model"].by_key.get(str(query.model_id))
        if facts.model is not None:  # the filings only of a model on record
            if query.filings_on is not None:
                facts.filings = read["filings"].records
            if query.filings_on_as_of:
                facts.filings_on_as_of = read["filings_on_as_of"].records
    if query.ranked_models:
        facts.ranked_models = [
            model for model in read["ranked_models"].records if model.national_filing_date is not None
        ]
    return facts
