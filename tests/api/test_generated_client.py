"""Issue #15: a client generated from the vouchers service's OpenAPI document drives a vendor's flow.

The document is the one a real vouchers process serves; openapi-python-client (the dev extras)
generates a package from it into a temporary directory, with no warning: every answer, error and
stream is described (so are the registry's and eligibility's documents, each generated too). A
vendor's system then works through the generated code alone: it finds the token URL in the
document's OAuth2 client-credentials scheme and gets a token there (the one step that is OAuth2
itself, not an operation of the document), then holds, captures, redeems, sends a redemption again
with its Idempotency-Key (the same answer), and is refused with a typed Problem
(`insufficient_balance`, its parameters kept). The voucher it spends is made by an officer as the
other vouchers tests make one (tests/vouchers/flow.py), through the live registry and eligibility.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from devtools import devauth
from shared.auth import VENDOR
from tests.api.apps import SERVICES, document
from tests.vouchers.flow import OFFICER_CHEN, YUAN, approved_m3, issue

PROBLEM_BODY = {
    "type": "urn:longgang-ai:problem:budget_exhausted",
    "title": "冲突",
    "status": 409,
    "code": "budget_exhausted",
    "detail": "…",
    "instance": "/v1/grants",
    "request_id": "0" * 32,
}
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "longgang_vouchers_client"
#: NDJSON and CSV answers are streams of bytes to a Python client (a File)
STREAMS = {"application/x-ndjson": "application/octet-stream", "text/csv": "application/octet-stream"}


def generate(spec: dict[str, Any], directory: Path, package: str = PACKAGE) -> ModuleType:
    """Generate the client package from `spec` under `directory` and import it."""
    config = {
        "project_name_override": package,
        "package_name_override": package,
        "post_hooks": [],
        "content_type_overrides": STREAMS,
    }
    (directory / "openapi.json").write_text(json.dumps(spec), encoding="utf-8")
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    generated = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(directory / "openapi.json"),
            "--config",
            str(directory / "config.json"),
            "--meta",
            "none",
            "--output-path",
            str(directory / package),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "warning" not in (generated.stdout + generated.stderr).lower(), generated.stdout + generated.stderr
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    return importlib.import_module(package)


def forget(package: str) -> None:
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
        del sys.modules[name]


@pytest.mark.parametrize("service", SERVICES)
def test_a_client_is_generated_from_each_document_without_a_warning(service: str, tmp_path: Path) -> None:
    """Every operation, answer and error of each document is understood by the generator."""
    package = generate(document(service), tmp_path, f"longgang_{service}_check")
    try:
        problem = importlib.import_module(f"{package.__name__}.models").Problem
        assert problem.from_dict({**PROBLEM_BODY, "remaining_fen": 1}).additional_properties == {"remaining_fen": 1}
    finally:
        forget(package.__name__)


@pytest.fixture(scope="module")
def client_package(live_vouchers: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    spec = httpx.get(live_vouchers + "/openapi.json", timeout=10).json()
    package = generate(spec, tmp_path_factory.mktemp("generated"))
    yield package
    forget(PACKAGE)


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_vendor_works_through_the_generated_client(
    client_package: ModuleType,
    live_vouchers: str,
    live_registry_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    # an officer issues a model voucher (as the other tests do); the vendor is given a client by the bureau
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    async with httpx.AsyncClient(base_url=live_vouchers, timeout=30, headers=OFFICER_CHEN) as officer:
        issued = await issue(officer, decision_id)
    assert issued.status_code == 201, issued.text
    code, amount_fen = issued.json()["code"], issued.json()["amount_fen"]
    client_id = f"generated-vendor-{uuid.uuid4().hex[:8]}"
    credentials = (
        await asyncio.to_thread(
            devauth.ensure_clients,
            live_registry_database,
            tmp_path / "clients.json",
            {client_id: {"name": "a model vendor", "scopes": [VENDOR], "organisation": supply.vendor}},
        )
    )[client_id]

    # the token: where the document's security scheme says (OAuth2 client credentials)
    async with httpx.AsyncClient(base_url=live_vouchers, timeout=10) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    (scheme,) = spec["components"]["securitySchemes"].values()
    token_url = scheme["flows"]["clientCredentials"]["tokenUrl"]
    async with httpx.AsyncClient(timeout=10) as oauth:
        granted = await oauth.post(
            token_url,
            data={"grant_type": "client_credentials"},
            auth=(credentials["client_id"], credentials["client_secret"]),
        )
    assert granted.status_code == 200, granted.text

    # from here on, the generated code only
    models = _module("models")
    create_hold = _module("api.redemption.create_hold")
    finish_hold = _module("api.redemption.finish_hold")
    redeem_voucher = _module("api.redemption.redeem_voucher")
    vendor = client_package.AuthenticatedClient(base_url=live_vouchers, token=granted.json()["access_token"])
    async with vendor:
        held = await create_hold.asyncio_detailed(
            code,
            client=vendor,
            body=models.HoldRequest(amount_fen=1_000 * YUAN, invoice_number="FP-GEN-1", hold_seconds=600),
            idempotency_key=f"{client_id}-hold",
        )
        assert held.status_code == 201, held.content
        hold = held.parsed
        assert isinstance(hold, models.RedemptionRead)
        assert (hold.status, hold.amount_fen, hold.vendor) == ("held", 1_000 * YUAN, supply.vendor)
        assert hold.voucher.held_fen == 1_000 * YUAN

        captured = await finish_hold.asyncio(
            hold.id, models.FinishHoldAction.CAPTURE, client=vendor, idempotency_key=f"{client_id}-capture"
        )
        assert isinstance(captured, models.HoldFinished)
        assert (captured.id, captured.status, captured.voucher.redeemed_fen) == (hold.id, "captured", 1_000 * YUAN)

        redemption = models.RedemptionRequest(amount_fen=2_000 * YUAN, invoice_number="FP-GEN-2")
        first = await redeem_voucher.asyncio_detailed(
            code, client=vendor, body=redemption, idempotency_key=f"{client_id}-redeem"
        )
        again = await redeem_voucher.asyncio_detailed(
            code, client=vendor, body=redemption, idempotency_key=f"{client_id}-redeem"
        )
        assert (first.status_code, again.status_code) == (201, 201), first.content
        assert isinstance(first.parsed, models.RedemptionRead)
        assert first.parsed.status == "captured"
        assert again.parsed == first.parsed  # the replay: the first answer, nothing redeemed twice
        assert first.parsed.voucher.redeemed_fen == 3_000 * YUAN

        available = amount_fen - 3_000 * YUAN
        refused = await redeem_voucher.asyncio_detailed(
            code,
            client=vendor,
            body=models.RedemptionRequest(amount_fen=available + 1, invoice_number="FP-GEN-3"),
            idempotency_key=f"{client_id}-too-much",
        )
        assert refused.status_code == 409
        problem = refused.parsed
        assert isinstance(problem, models.Problem)
        assert (problem.code, problem.status) == ("insufficient_balance", 409)
        assert problem.additional_properties["available_fen"] == available
        assert problem.additional_properties["requested_fen"] == available + 1
