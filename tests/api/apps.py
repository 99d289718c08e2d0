"""The three services' apps as the API tests build them (in process, no database needed to build).

`build_app` is what tests/api/test_schemathesis.py fuzzes; `document` is the OpenAPI document a
service's app serves at /openapi.json, which tests/api/test_openapi_snapshot.py compares with the
committed copy under tests/api/openapi/.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from shared.dbroles import login_url

SERVICES = ("registry", "eligibility", "vouchers")

PLACEHOLDER_URL = "postgresql://schemathesis@127.0.0.1:1/not_used"
PEER_SETTINGS = {
    "registry_url": "http://127.0.0.1:1",
    "client_id": "schemathesis",
    "client_secret": "not-used",
    "auth_token_url": "http://127.0.0.1:1/oauth/token",
}


#: not about rate limits (tests/hostile/test_rate_limits_shared.py is): one client per role sends every request
UNLIMITED = {
    f"rate_limit_{name}": 0.0
    for name in ("per_second", "read_per_second", "applicant_per_second", "platform_per_second", "bureau_per_second")
}


def build_app(service: str, database_url: str, **extra: Any) -> FastAPI:
    extra = {**UNLIMITED, **extra}
    if service == "registry":
        from services.registry.app import create_app as registry_app
        from services.registry.settings import RegistrySettings

        return registry_app(RegistrySettings(database_url=login_url(database_url, "registry"), **extra))
    if service == "eligibility":
        from services.eligibility.app import create_app as eligibility_app
        from services.eligibility.settings import EligibilitySettings

        return eligibility_app(EligibilitySettings(database_url=login_url(database_url, "eligibility"), **extra))
    from services.vouchers.app import create_app as vouchers_app
    from services.vouchers.settings import VouchersSettings

    return vouchers_app(VouchersSettings(database_url=login_url(database_url, "vouchers"), **extra))


def document(service: str) -> dict[str, Any]:
    """The service's OpenAPI document, as its app serves it at /openapi.json (no database needed)."""
    extra: dict[str, Any] = {}
    if service != "registry":
        extra = dict(PEER_SETTINGS)
    if service == "vouchers":
        extra["eligibility_url"] = "http://127.0.0.1:1"
    built: dict[str, Any] = build_app(service, PLACEHOLDER_URL, **extra).openapi()
    return built
