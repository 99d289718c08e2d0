"""What settlement's routes share: who may do what, the path parameters, the page."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from shared.auth import ADMIN, APPLICANT, APPROVER, AUDITOR, OFFICER, VENDOR, Principal, require
from shared.identifiers import CreditCode
from shared.pagination import PageParams, page_params

Pages = Annotated[PageParams, Depends(page_params)]
BatchId = Annotated[int, Path(ge=1, le=2**62)]
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
