"""Issue #14: the three services' OpenAPI documents are byte-identical to the committed copies.

A refactoring must not change the API. When a change is intended, regenerate the copies with
`.venv/bin/python -m tests.api.snapshot` (tests/api/snapshot.py) and commit them with the change:
their diff is the API change.
"""

from __future__ import annotations

import difflib
import os

import pytest

from tests.api.apps import SERVICES, document
from tests.api.snapshot import REGENERATE, WRITE, canonical, path


@pytest.mark.parametrize("service", SERVICES)
def test_the_openapi_document_is_the_committed_one(service: str) -> None:
    served = canonical(document(service))
    if os.environ.get(WRITE) == "1":
        path(service).parent.mkdir(exist_ok=True)
        path(service).write_text(served, encoding="utf-8")
        return
    committed = path(service).read_text(encoding="utf-8")
    if served != committed:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            served.splitlines(keepends=True),
            f"committed {path(service).name}",
            f"served by {service}",
        )
        shown = "".join(list(diff)[:80])
        pytest.fail(f"{service}'s OpenAPI document changed; if intended, run `{REGENERATE}`\n{shown}", pytrace=False)
