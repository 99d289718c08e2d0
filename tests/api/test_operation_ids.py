"""Issue #15: every operation of the three OpenAPI documents has an id named for people.

A generated client names its functions by `operationId`; FastAPI's default id is the function's
name, path and method (`redeem_v1_vouchers__code__redemptions_post`). shared/app.py's
`operation_id` makes it the route's name (the endpoint function's: `redeem_voucher`), one
mechanism for the three services; two routes of one service with one name would collide here.
"""

from __future__ import annotations

import collections
import re

import pytest

from tests.api.apps import SERVICES, document

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.mark.parametrize("service", SERVICES)
def test_operation_ids_are_unique_and_not_the_framework_defaults(service: str) -> None:
    ids = [
        operation["operationId"]
        for item in document(service)["paths"].values()
        for method, operation in item.items()
        if method in METHODS
    ]
    repeated = [name for name, count in collections.Counter(ids).items() if count > 1]
    assert not repeated, f"{service}: operation ids used twice: {repeated}"
    defaults = [name for name in ids if re.search(r"_(get|post|put|patch|delete)$", name) or "_v1_" in name]
    assert not defaults, f"{service}: framework-default operation ids: {defaults}"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in ids), ids
