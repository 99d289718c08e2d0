"""The aggregates API's refusals (the codes are the kernel's: shared/errors.py, shared/auth.py)."""

from __future__ import annotations

from shared.auth import DASHBOARD, DASHBOARD_DETAIL, FORBIDDEN
from shared.errors import ProblemError

from .deps import DETAIL_READERS


def detail_forbidden() -> ProblemError:
    """A dashboard client without `dashboard:detail` asked for per-enterprise figures."""
    return ProblemError(FORBIDDEN, needed=f"{', '.join(DETAIL_READERS)}, {DASHBOARD} + {DASHBOARD_DETAIL}")
