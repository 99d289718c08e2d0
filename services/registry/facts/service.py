"""Reading the facts of one application in one snapshot, with the as-of reads of `reads.py` (what `records.py`
`find_record` / `all_records` answer), all of them one statement: one round trip (issue #16), and every read
sees the same committed state, so the organisation, its revenues and a vendor cannot come from either side of
an import. Nothing is written, and no transaction is begun around the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from shared.db import Connections

from .reads import Answer, Reads
from .schemas import FactsQuery, FactsRead


async def read_facts(connections: Connections, query: FactsQuery) -> FactsRead:
    return (await read_many_facts(connections, [query]))[0]


async def read_many_facts(connections: Connections, queries: Sequence[FactsQuery]) -> list[FactsRead]:
    """The facts of several applications (`POST /v1/facts/batch`), in their order: every query's reads are parts of
    the same one statement, so all of them see one snapshot, as one query's reads do."""
    reads = Reads()
    for n, query in enumerate(queries):
        _plan(reads, n, query)
    async with connections.acquire() as connection:  # a raw connection for the one statement (issue #16)
        read = await reads.fetch(connection)
    return [_answer(read, n, query) for n, query in enumerate(queries)]


def _vendor_codes(query: FactsQuery) -> list[str]:
    """The vendors a query asks about, each once, in order: read and answered by the same list."""
    return sorted(set(query.vendor_codes))


def _recognition_ids(query: FactsQuery) -> list[uuid.UUID]:
    """The recognitions a query asks about by id, each once, in order: read and answered by the same list."""
    return sorted(set(query.recognition_ids), key=str)


def _plan(reads: Reads, n: int, query: FactsQuery) -> None:
    """The reads query `n` needs (one statement carries every query's reads)."""
    code, day = query.credit_code, query.as_of
    reads.by_keys(n, "organisation", [code], day)
    if query.revenues:
        reads.as_of(n, "revenues", day, code)
    if query.affiliations:  # active, involving the organisation on either side
        reads.as_of(n, "affiliations", day, code)
    vendor_codes = _vendor_codes(query)
    if vendor_codes:
        reads.by_keys(n, "vendors", vendor_codes, day)
    if query.recognitions:
        reads.as_of(n, "recognitions", day, code)
    recognition_ids = _recognition_ids(query)
    if recognition_ids:
        reads.by_keys(n, "recognitions_by_id", recognition_ids, day)
    if query.model_id is not None:
        reads.by_keys(n, "model", [query.model_id], day)
        if query.filings_on is not None:
            reads.as_of(n, "filings", query.filings_on, query.model_id)
        if query.filings_on_as_of:
            reads.as_of(n, "filings_on_as_of", day, query.model_id)
    if query.ranked_models:
        reads.as_of(n, "ranked_models", day)


def _answer(all_reads: Mapping[tuple[int, str], Answer], n: int, query: FactsQuery) -> FactsRead:
    """Query `n`'s answer from the reads `_plan` asked for it."""
    code, day = query.credit_code, query.as_of

    def read(name: str) -> Answer:
        return all_reads[(n, name)]

    facts = FactsRead(credit_code=code, as_of=day, organisation=read("organisation").by_key.get(code))
    if facts.organisation is None:  # nothing else is answered about an organisation with no record on the date
        return facts
    if query.revenues:
        facts.revenues = read("revenues").records
    if query.affiliations:
        facts.affiliations = read("affiliations").records
    vendor_codes = _vendor_codes(query)
    if vendor_codes:
        facts.vendors = {vendor: read("vendors").by_key.get(vendor) for vendor in vendor_codes}
    if query.recognitions:
        facts.recognitions = read("recognitions").records
    recognition_ids = _recognition_ids(query)
    if recognition_ids:
        facts.recognitions_by_id = {
            str(rid): read("recognitions_by_id").by_key.get(str(rid)) for rid in recognition_ids
        }
    if query.model_id is not None:
        facts.model = read("model").by_key.get(str(query.model_id))
        if facts.model is not None:  # the filings only of a model on record
            if query.filings_on is not None:
                facts.filings = read("filings").records
            if query.filings_on_as_of:
                facts.filings_on_as_of = read("filings_on_as_of").records
    if query.ranked_models:
        facts.ranked_models = [
            model for model in read("ranked_models").records if model.national_filing_date is not None
        ]
    return facts
