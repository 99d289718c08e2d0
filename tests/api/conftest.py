"""Schemathesis' items named by their operation.

Schemathesis makes one item per API operation, named `test_registry[GET /v1/audit]`, but pytest 9 builds an item's
node id from its `originalname` and parameters, and schemathesis gives none: every item of a test had the same id
(`…::test_registry`). Reports could not say which operation failed, and pytest-xdist, which schedules a file's items
by node id (`make test` runs two workers), kept one item per id: 3 of 157 ran. Each item's id is made its name's.
"""

from __future__ import annotations

import pytest
from schemathesis.pytest.plugin import SchemathesisFunction


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, SchemathesisFunction) and item.parent is not None:
            item._id = item.parent.id.child(item.name)
