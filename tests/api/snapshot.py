"""The committed OpenAPI documents (tests/api/openapi/<service>.json) and how to regenerate them.

Regenerate after an intended API change (and review the diff):

    .venv/bin/python -m tests.api.snapshot

which runs tests/api/test_openapi_snapshot.py with `OPENAPI_SNAPSHOT_WRITE=1`: the documents are
written in the test session's environment (conftest.py's keys: the registry serves its token
endpoint), the one they are compared in. Each document is the service's `app.openapi()`
(tests/api/apps.py builds the apps), serialised canonically: keys sorted, 2-space indent,
non-ASCII kept, one final newline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

DIRECTORY = Path(__file__).parent / "openapi"
REGENERATE = ".venv/bin/python -m tests.api.snapshot"
WRITE = "OPENAPI_SNAPSHOT_WRITE"


def canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def path(service: str) -> Path:
    return DIRECTORY / f"{service}.json"


def main() -> int:
    import pytest

    os.environ[WRITE] = "1"
    return int(pytest.main(["-q", "-p", "no:cacheprovider", str(Path(__file__).with_name("test_openapi_snapshot.py"))]))


if __name__ == "__main__":
    sys.exit(main())
