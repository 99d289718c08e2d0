"""Issuance's payloads: an officer's issuance or grant, a void, a grant's reversal."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from ..schemas import Input


class IssueRequest(Input):
    """The officer who issues is the caller (its token), as for every actor in the ledger."""

    decision_id: uuid.UUID = Field(description="An approved decision of the eligibility service")


class ReversalRequest(Input):
    reason: Annotated[str, Field(min_length=2, max_length=2000)]


class VoidRequest(Input):
    reason: Annotated[str, Field(min_length=2, max_length=2000)]
