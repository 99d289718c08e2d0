"""Issue #15: docs/integrators.md works as written, in curl and in Python (httpx).

The guide's code blocks carry their step in the info string (```sh step=model-vendor/redeem```,
```python step=…```; the webhook receiver is ```python file=receiver.py```). For each walk-through
and each language this test runs, against the three services as real processes (their own
database, webhooks allowed to 127.0.0.1 and retried quickly):

- the administrator's step (`<walk-through>/client`: `POST /v1/clients` with an admin client the
  CLI made, as an administrator would) as one script; the `client_id` and `client_secret` it prints
  are what the administrator hands to the integrator;
- the integrator's steps, in the order of the page, as one script (bash with `set -euo pipefail`,
  or the venv's python), as someone pasting them into one terminal or one Python session would;
  the receiver the page gives is saved beside it as receiver.py, and the walk-through starts it.

The snippets read only the variables the page tells the reader to export ($REGISTRY, $VOUCHERS,
$CLIENT_ID, $CLIENT_SECRET, $VOUCHER, $VENDOR_CODE, $WEBHOOK_URL, $RECEIVER_PORT, …). What the bureau
does outside the walk-through (registry facts, an approved decision, the voucher; the holder's
applicant client) is set up here as the other tests do it (tests/vouchers/flow.py).

Each step's output is checked against what it must print (EXPECTED), a script that fails (a wrong
path: curl --fail-with-body, raise_for_status) fails the test, and every tagged block of the page
must be a known step, present in both languages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools import devauth
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import ADMIN, APPLICANT
from shared.feed.signing import new_secret, standard_headers
from shared.migrations import SERVICES
from tests.auth import admin
from tests.conftest import AUTH_DIR, DatabaseFactory, free_port
from tests.e2e.test_webhooks import FAST_WEBHOOKS  # webhooks to 127.0.0.1, retried and polled quickly
from tests.eligibility import seed
from tests.vouchers.flow import OFFICER_CHEN, approve, approved_m3, issue, m1_decision

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "integrators.md"
LANGUAGES = ("sh", "python")
SCRIPT_TIMEOUT = 90

#: What each step must print (every pattern, in that step's output). A step the page has and this
#: table lacks, or the other way round, fails test_every_step_is_in_both_languages_and_checked.
EXPECTED: dict[str, list[str]] = {
    "platform/client": [r"client_id: \S+", r"client_secret: \S+"],
    "platform/token": [r"token: Bearer, expires in \d+ s"],
    "platform/import": [r"import: total 2, failed 0"],
    "platform/feed": [r"feed: \d+ events, cursor \S+"],
    "platform/subscribe": [r"webhook \d+: active, secret whsec_\S+"],
    "platform/receiver": [r"receiver listening on 127\.0\.0\.1:\d+"],
    "platform/trigger": [r"import: total 2, failed 0"],
    "platform/delivered": [r"delivered: registry\.revenue\.created 2\d\d"],
    "platform/export": [r"export: \d+ organisations, complete"],
    "platform/errors": [r"422 import_rejected", r"row 1: credit_code"],
    "platform/stop": [r"receiver stopped"],
    "platform-keys/keys": [r"public key: OKP Ed25519 kid platform-key-1"],
    "platform-keys/client": [r"client_id: \S+", r"client_secret: None|client_secret: null"],
    "platform-keys/token": [r"token: Bearer, expires in \d+ s"],
    "platform-keys/call": [r"event types: \d+"],
    "model-vendor/client": [r"client_id: \S+", r"client_secret: \S+"],
    "model-vendor/token": [r"token: Bearer, expires in \d+ s"],
    "model-vendor/voucher": [r"voucher M3-\S+: M3 active, available \d+ fen"],
    "model-vendor/subscribe": [r"webhook \d+: active, secret whsec_\S+"],
    "model-vendor/receiver": [r"receiver listening on 127\.0\.0\.1:\d+"],
    "model-vendor/redeem": [r"201 captured 100000 fen, available \d+"],
    "model-vendor/replay": [r"replay: 201, same redemption \d+"],
    "model-vendor/hold": [
        r"hold \d+: held 50000 fen",
        r"capture: captured",
        r"hold \d+: held 20000 fen",
        r"release: released",
    ],
    "model-vendor/delivered": [r"delivered: vouchers\.voucher\.redeemed 2\d\d"],
    "model-vendor/refusals": [
        r"409 insufficient_balance available_fen=\d+ .*requested_fen=\d+",
        r"409 idempotency_key_reused",
        r"400 idempotency_key_required",
    ],
    "model-vendor/stop": [r"receiver stopped"],
    "compute-vendor/client": [r"client_id: \S+", r"client_secret: \S+"],
    "compute-vendor/token": [r"token: Bearer, expires in \d+ s"],
    "compute-vendor/refused": [r"403 vendor_not_authorised"],
    "compute-vendor/authorise": [r"authorised: 20[01] [0-9A-Z]{18} basis holder"],
    "compute-vendor/voucher": [r"voucher M1-\S+: M1 active, available \d+ fen"],
    "compute-vendor/subscribe": [r"webhook \d+: active, secret whsec_\S+"],
    "compute-vendor/receiver": [r"receiver listening on 127\.0\.0\.1:\d+"],
    "compute-vendor/redeem": [r"201 captured 300000 fen, available \d+"],
    "compute-vendor/delivered": [r"delivered: vouchers\.voucher\.redeemed 2\d\d"],
    "compute-vendor/stop": [r"receiver stopped"],
}
#: lines the receiver prints (into the walk-through's output) when a delivery verifies
RECEIVED = {
    "platform": r"verified registry-\d+ registry\.revenue\.created",
    "model-vendor": r"verified vouchers-\d+ vouchers\.voucher\.redeemed",
    "compute-vendor": r"verified vouchers-\d+ vouchers\.voucher\.redeemed",
}

#: what the receiver prints when a delivery does not verify
RECEIVER_REFUSED = "refused: the signature does not verify"

_BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    language: str
    attributes: dict[str, str]
    code: str


def guide_blocks() -> list[Block]:
    blocks = []
    for language, info, code in _BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        attributes = dict(part.split("=", 1) for part in info.split() if "=" in part)
        blocks.append(Block(language, attributes, code))
    return blocks


def steps(language: str, prefix: str) -> list[tuple[str, str]]:
    """(step, code) of one language whose step starts with `prefix`, in the page's order."""
    return [
        (block.attributes["step"], block.code)
        for block in guide_blocks()
        if block.language == language and block.attributes.get("step", "").startswith(prefix)
    ]


def files() -> dict[str, str]:
    """The files the page asks the reader to save (receiver.py, longgang_client.py)."""
    return {block.attributes["file"]: block.code for block in guide_blocks() if "file" in block.attributes}


def test_every_step_is_in_both_languages_and_checked() -> None:
    tagged = [block for block in guide_blocks() if "step" in block.attributes]
    assert {block.language for block in tagged} == set(LANGUAGES)
    for language in LANGUAGES:
        found = [block.attributes["step"] for block in tagged if block.language == language]
        assert len(found) == len(set(found)), f"{language}: a step appears twice: {found}"
        assert set(found) == set(EXPECTED), (
            f"{language}: steps in the page but not checked here: {sorted(set(found) - set(EXPECTED))}; "
            f"checked here but not in the page: {sorted(set(EXPECTED) - set(found))}"
        )
    order = {language: [b.attributes["step"] for b in tagged if b.language == language] for language in LANGUAGES}
    assert order["sh"] == order["python"], "the two languages give the steps in different orders"
    assert set(files()) == {"receiver.py", "longgang_client.py"}
    assert RECEIVER_REFUSED in files()["receiver.py"]


def test_the_receiver_verifies_what_the_services_sign_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's receiver.py against the services' own signing (shared/feed/signing.py)."""
    secret = new_secret()
    (tmp_path / "receiver.py").write_text(files()["receiver.py"], encoding="utf-8")
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    receiver = runpy.run_path(str(tmp_path / "receiver.py"))  # not as __main__: it does not serve
    body = b'{"id":"vouchers-7","type":"vouchers.voucher.redeemed"}'

    def headers(secrets: list[str], timestamp: float, message_id: str = "vouchers-7") -> Message:
        message = Message()
        for name, value in standard_headers(secrets, message_id, int(timestamp), body).items():
            message[name] = value
        return message

    now = time.time()
    verify = receiver["verify"]
    assert verify(secret, headers([secret], now), body)
    assert verify(secret, headers([new_secret(), secret], now), body)  # a rotation: one of several
    assert not verify(secret, headers([secret], now), body + b" ")
    assert not verify(secret, headers([new_secret()], now), body)
    assert not verify(secret, headers([secret], now - 600), body)
    another_event = headers([secret], now)
    another_event.replace_header("webhook-id", "vouchers-8")  # a signature moved to another event
    assert not verify(secret, another_event, body)
    assert not verify(secret, Message(), body)


@dataclass
class Running:
    stack: Stack
    database_url: str
    admin: dict[str, Any]

    def url(self, service: str) -> str:
        return self.stack.url(service)


@pytest.fixture(scope="module")
def running(databases: DatabaseFactory, ample_budgets: Path) -> Iterator[Running]:
    database_url = databases.create("longgang_integrators")
    stack = Stack(database_url, "127.0.0.1", {service: free_port() for service in SERVICES})
    processes = {"registry": start_service(stack, "registry", extra_env=FAST_WEBHOOKS)}
    try:
        wait_ready(stack, processes, timeout=60)
        wanted = {
            **devauth.SERVICE_CLIENTS,
            "guide-admin": {"name": "the bureau's administrator", "scopes": [ADMIN]},
        }
        clients = devauth.ensure_clients(database_url, AUTH_DIR / f"guide-{uuid.uuid4().hex[:8]}.json", wanted)
        environment = {
            **devauth.service_env(AUTH_DIR, stack.url("registry"), clients),
            **FAST_WEBHOOKS,
            "VOUCHERS_BUDGET_FILE": str(ample_budgets),
        }
        for service in ("eligibility", "vouchers"):
            processes[service] = start_service(stack, service, extra_env=environment)
        wait_ready(stack, processes, timeout=60)
        yield Running(stack, database_url, clients["guide-admin"])
    finally:
        stop_services(processes)


def run_script(language: str, code: str, directory: Path, env: dict[str, str]) -> str:
    """Runs a script in its own process group (ended after, with anything it left running); its output."""
    script = directory / ("script.sh" if language == "sh" else "script.py")
    script.write_text(code, encoding="utf-8")
    command = ["bash", str(script)] if language == "sh" else [sys.executable, "-u", str(script)]
    output = directory / f"{script.name}.out"
    # python3 in the page is the venv's (httpx is there); nothing from this process's environment but PATH and HOME
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    environment = {"PATH": path, "HOME": str(directory), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **env}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=directory, env=environment, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = -1
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = output.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, f"{script.name} ended with {returncode}:\n{text}\n--- script:\n{code}"
    return text


def marked(language: str, parts: list[tuple[str, str]]) -> str:
    """The steps joined into one script, each announced by a marker line the output is split by."""
    lines = ["set -euo pipefail\n"] if language == "sh" else []
    for step, code in parts:
        lines.append(f'echo "@@step {step}"\n' if language == "sh" else f'print("@@step {step}", flush=True)\n')
        lines.append(code)
    return "".join(lines)


def check_steps(output: str, parts: list[tuple[str, str]]) -> None:
    sections = dict(re.findall(r"^@@step (\S+)\n(.*?)(?=^@@step |\Z)", output, flags=re.MULTILINE | re.DOTALL))
    for step, _ in parts:
        assert step in sections, f"step {step} printed nothing:\n{output}"
        for pattern in EXPECTED[step]:
            assert re.search(pattern, sections[step]), f"step {step}: no line matches {pattern!r}:\n{sections[step]}"


def walk(running: Running, walk_name: str, language: str, directory: Path, env: dict[str, str]) -> str:
    """The administrator's step, then the integrator's steps with the client it made; the output."""
    base = {
        "REGISTRY": running.url("registry"),
        "ELIGIBILITY": running.url("eligibility"),
        "VOUCHERS": running.url("vouchers"),
        "ADMIN_CLIENT_ID": running.admin["client_id"],
        "ADMIN_CLIENT_SECRET": running.admin["client_secret"],
        **env,
    }
    for name, code in files().items():
        (directory / name).write_text(code, encoding="utf-8")
    all_steps = steps(language, walk_name + "/")
    admin_steps = [(s, c) for s, c in all_steps if s == f"{walk_name}/client"]
    integrator_steps = [(s, c) for s, c in all_steps if s != f"{walk_name}/client"]
    if walk_name == "platform-keys":  # the key pair is made before the administrator registers it
        keys = [(s, c) for s, c in integrator_steps if s.endswith("/keys")]
        output = run_script(language, marked(language, keys), directory, base)
        check_steps(output, keys)
        integrator_steps = [(s, c) for s, c in integrator_steps if not s.endswith("/keys")]
    assert admin_steps, f"{walk_name}: no administrator's step in {language}"
    assert integrator_steps, f"{walk_name}: no steps in {language}"
    administered = run_script(language, marked(language, admin_steps), directory, base)
    check_steps(administered, admin_steps)
    client_id = re.search(r"^client_id: (\S+)$", administered, flags=re.MULTILINE)
    secret = re.search(r"^client_secret: (\S+)$", administered, flags=re.MULTILINE)
    assert client_id, administered
    assert secret, administered
    integrator = {**base, "CLIENT_ID": client_id[1]}
    integrator.pop("ADMIN_CLIENT_ID")
    integrator.pop("ADMIN_CLIENT_SECRET")
    if secret[1] not in ("None", "null"):
        integrator["CLIENT_SECRET"] = secret[1]
    output = run_script(language, marked(language, integrator_steps), directory, integrator)
    check_steps(output, integrator_steps)
    return output


def receiver_env() -> dict[str, str]:
    port = free_port()
    return {"RECEIVER_PORT": str(port), "WEBHOOK_URL": f"http://127.0.0.1:{port}/longgang/hooks"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_data_platform_walk_through(running: Running, language: str, tmp_path: Path) -> None:
    output = walk(running, "platform", language, tmp_path, receiver_env())
    assert re.search(RECEIVED["platform"], output), output
    assert RECEIVER_REFUSED not in output, output


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_platform_client_with_a_key_instead_of_a_secret(running: Running, language: str, tmp_path: Path) -> None:
    walk(running, "platform-keys", language, tmp_path, {})


async def _officer_issues(running: Running, measure: str) -> dict[str, str]:
    """What the bureau does before the vendor's first hour: registry facts, an approved decision, the voucher."""
    async with (
        httpx.AsyncClient(base_url=running.url("registry"), timeout=30, headers=admin()) as registry,
        httpx.AsyncClient(base_url=running.url("eligibility"), timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=running.url("vouchers"), timeout=30, headers=OFFICER_CHEN) as vouchers,
    ):
        if measure == "M3":
            supply, decision_id = await approved_m3(registry, eligibility)
            issued = await issue(vouchers, decision_id)
            assert issued.status_code == 201, issued.text
            return {"VOUCHER": issued.json()["code"], "VENDOR_CODE": supply.vendor}
        holder, _named_provider, application = await m1_decision(registry, eligibility)
        decision_id = await approve(eligibility, application)
        issued = await issue(vouchers, decision_id)
        assert issued.status_code == 201, issued.text
        # another registered compute vendor, not named on the application: the holder must authorise it
        vendor = await seed.vendor(registry, is_compute_vendor=True)
        return {"VOUCHER": issued.json()["code"], "VENDOR_CODE": vendor, "HOLDER_CODE": holder}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_model_vendor_walk_through(running: Running, language: str, tmp_path: Path) -> None:
    env = asyncio.run(_officer_issues(running, "M3"))
    output = walk(running, "model-vendor", language, tmp_path, {**env, **receiver_env()})
    assert re.search(RECEIVED["model-vendor"], output), output
    assert RECEIVER_REFUSED not in output, output


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compute_vendor_walk_through(running: Running, language: str, tmp_path: Path) -> None:
    env = asyncio.run(_officer_issues(running, "M1"))
    holder = f"guide-holder-{uuid.uuid4().hex[:8]}"
    credentials = devauth.ensure_clients(
        running.database_url,
        tmp_path / "holder.json",
        {holder: {"name": "the voucher's holder", "scopes": [APPLICANT], "organisation": env.pop("HOLDER_CODE")}},
    )[holder]
    env |= {"HOLDER_CLIENT_ID": credentials["client_id"], "HOLDER_CLIENT_SECRET": credentials["client_secret"]}
    output = walk(running, "compute-vendor", language, tmp_path, {**env, **receiver_env()})
    assert re.search(RECEIVED["compute-vendor"], output), output
    assert RECEIVER_REFUSED not in output, output
