"""What the aggregates routes share: who reads them, the year and measure filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from shared.auth import ADMIN, APPROVER, AUDITOR, DASHBOARD, OFFICER, Principal, require

#: who reads the programme's aggregates (nothing per enterprise)
READERS = (DASHBOARD, ADMIN, AUDITOR, OFFICER, APPROVER)
#: who reads per-enterprise figures outright; a dashboard client needs `dashboard:detail` as well
DETAIL_READERS = (OFFICER, APPROVER, ADMIN, AUDITOR)
Reader = Annotated[Principal, require(*READERS)]
Year = Annotated[int | None, Query(ge=2000, le=2100, description="Calendar year (Shenzhen time); default: this year")]
MeasureFilter = Annotated[str | None, Query(pattern=r"^M(1[0-5]|[1-9])$", description="One measure, e.g. M1")]
