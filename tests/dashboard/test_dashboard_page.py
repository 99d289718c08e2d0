"""Issue #6's acceptance test for the built-in dashboard page, in a real headless browser.

The three services run as real processes with authentication on; the demo data set goes in
through their public APIs (as `make demo` does), plus one settlement batch so that every key
figure has something to show. A dashboard client gets its token from the registry's token
endpoint, and Debian's Chromium, driven by Playwright, opens `/dashboard#token=…` on the
vouchers service: the key figures are non-zero, every chart has drawn its data (Chart.js's
datasets and the canvas pixels), the page asked for nothing but the aggregates API, the
language toggle switches every label to English and back, and a screenshot is saved under
test-artifacts/. Then the plain error messages: a bad token (401), a role that may not (403),
the eligibility service down (503 for its panels, the rest still drawn).

Chromium comes from Debian (`make browser`, a prerequisite of `make test`, installs it when
absent); Playwright never downloads a browser. Without /usr/bin/chromium this test fails, and
says why: it is never skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from devtools import devauth
from devtools.demo import DEMO_VENDOR, load_demo, load_flows
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import DASHBOARD, DASHBOARD_DETAIL
from shared.migrations import SERVICES
from tests.auth import token as mint_token
from tests.conftest import AUTH_DIR, DatabaseFactory, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
VENDOR_README = ROOT / "services" / "vouchers" / "dashboard" / "vendor" / "README.md"
#: as the machine's probe starts it: headless, as root, and no calls to Google's hosts (the network is closed)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = ("monthly", "measures", "budget", "headroom", "vendors", "applications", "queue")
MONEY_FIGURES = ("issued", "redeemed", "settled", "remaining", "granted", "budget")
TIMEOUT_MS = 30_000
THIS_YEAR = datetime.now(ZoneInfo("Asia/Shanghai")).year  # the page's default year: aggregates count Shenzhen time


@dataclass
class Demo:
    stack: Stack
    clients: dict[str, Any]
    processes: dict[str, Any]
    environment: dict[str, str]

    def url(self, service: str) -> str:
        return self.stack.url(service)

    def token(self, client_id: str) -> str:
        return devauth.fetch_token(self.url("registry"), self.clients[client_id])

    def dashboard(self, token: str) -> str:
        return f"{self.url('vouchers')}/dashboard#token={token}"


def _settle_demo_vendor(demo: Demo) -> None:
    """An officer gathers the demo vendor's redemption and the administrator closes the batch (four eyes), so that
    `settled` is not zero."""
    headers = {"Authorization": f"Bearer {demo.token('dev-officer')}", "Accept-Language": "en"}
    closer = {"Authorization": f"Bearer {demo.token('dev-admin')}"}
    with httpx.Client(base_url=demo.url("vouchers"), headers=headers, timeout=30) as vouchers:
        created = vouchers.post("/v1/settlement-batches", json={"vendor": DEMO_VENDOR})
        assert created.status_code == 201, created.text
        closed = vouchers.post(f"/v1/settlement-batches/{created.json()['id']}/close", headers=closer)
        assert closed.status_code == 200, closed.text
        assert closed.json()["total_fen"] > 0


def _wait_projected(demo: Demo) -> dict[str, Any]:
    """The aggregates' summary once every ledger entry is projected (`as_of.lag_entries` 0)."""
    headers = {"Authorization": f"Bearer {demo.token('dev-dashboard')}"}
    deadline = time.monotonic() + 30
    while True:
        summary = httpx.get(
            demo.url("vouchers") + "/v1/aggregates/summary", params={"year": THIS_YEAR}, headers=headers, timeout=10
        )
        assert summary.status_code == 200, summary.text
        body: dict[str, Any] = summary.json()
        if body["as_of"]["lag_entries"] == 0 or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


@pytest.fixture(scope="module")
def demo(databases: DatabaseFactory) -> Iterator[Demo]:
    database_url = databases.create("longgang_dashboard")
    stack = Stack(database_url, "127.0.0.1", {service: free_port() for service in SERVICES})
    wanted = {**devauth.SERVICE_CLIENTS, **devauth.demo_clients(DEMO_VENDOR)}
    clients = devauth.ensure_clients(database_url, AUTH_DIR / f"clients-dashboard-{uuid.uuid4().hex[:8]}.json", wanted)
    environment = devauth.service_env(AUTH_DIR, stack.url("registry"), clients)
    processes = {service: start_service(stack, service, extra_env=environment) for service in SERVICES}
    try:
        wait_ready(stack, processes, timeout=60)
        load_demo(stack.url("registry"), clients)
        load_flows(stack.url("registry"), stack.url("eligibility"), stack.url("vouchers"), clients)
        running = Demo(stack, clients, processes, environment)
        _settle_demo_vendor(running)
        _wait_projected(running)
        yield running
    finally:
        stop_services(processes)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian's Chromium is not installed ({CHROMIUM} is missing): the dashboard's browser test needs it. "
            "Run `make browser` (apt-get install chromium), which `make test` does first.",
            pytrace=False,
        )
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield launched
    launched.close()


@dataclass
class Visit:
    page: Page
    requests: list[str]
    problems: list[str]


@pytest.fixture
def visit(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Visit]:
    """A fresh page (own storage) that records what it requests and any script error or CSP violation.

    When the test fails, what the page showed is kept: test-artifacts/dashboard-failed-<test>.png."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    seen = Visit(page, [], [])
    page.on("request", lambda sent: seen.requests.append(sent.url))
    page.on("pageerror", lambda error: seen.problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        # the browser logs each non-2xx answer as an error; the tests check answers themselves
        if message.type == "error" and "Failed to load resource" not in message.text:
            seen.problems.append(f"console: {message.text}")

    page.on("console", console)
    yield seen
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(PlaywrightError):  # (a page that crashed has nothing to show)
            page.screenshot(path=str(ARTIFACTS / f"dashboard-failed-{request.node.name}.png"), full_page=True)
    context.close()


def _wait_settled(page: Page) -> str:
    page.wait_for_selector("body[data-state=ready], body[data-state=error], body[data-state=login]", state="attached")
    return str(page.get_attribute("body", "data-state"))


def _chart(page: Page, name: str) -> dict[str, Any]:
    """What Chart.js holds for one chart, and how many canvas pixels carry a dataset's colour."""
    found: dict[str, Any] = page.evaluate(
        """(name) => {
            const canvas = document.getElementById("chart-" + name);
            const chart = window.Chart.getChart(canvas);
            if (!chart) return {drawn: false};
            const datasets = chart.data.datasets.map((set) => ({label: set.label, data: set.data.map(Number)}));
            const colours = new Set(chart.data.datasets.map((set) => String(set.backgroundColor).toLowerCase()));
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0, coloured = 0;
            for (let i = 0; i < pixels.length; i += 4) {
                if (pixels[i + 3] === 0) continue;
                painted += 1;
                const hex = "#" + [pixels[i], pixels[i + 1], pixels[i + 2]]
                    .map((v) => v.toString(16).padStart(2, "0")).join("");
                if (pixels[i + 3] === 255 && colours.has(hex)) coloured += 1;
            }
            return {drawn: true, labels: chart.data.labels.map(String), datasets, painted, coloured,
                    width: canvas.width, height: canvas.height};
        }""",
        name,
    )
    return found


def _kpis(page: Page) -> dict[str, tuple[int, str]]:
    """Each key figure: (its amount in fen, the text shown)."""
    rows: list[list[str]] = page.evaluate(
        """() => Array.from(document.querySelectorAll(".kpi")).map((card) => {
            const value = card.querySelector(".value");
            return [card.dataset.kpi, value.getAttribute("data-fen") || "", value.textContent];
        })"""
    )
    return {name: (int(fen) if fen else -1, text) for name, fen, text in rows}


def _labels(page: Page) -> dict[str, str]:
    return {
        "title": page.inner_text("h1"),
        "issued": page.inner_text('.kpi[data-kpi="issued"] .label'),
        "monthly": page.inner_text('[data-chart="monthly"] figcaption'),
        "toggle": page.inner_text("#lang"),
        "year": page.inner_text('label[for="year"]'),
    }


def test_the_page_is_public_but_shows_nothing_without_a_token(demo: Demo, visit: Visit) -> None:
    base = demo.url("vouchers")
    page = httpx.get(base + "/dashboard", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "https://" not in page.text
    assert "http://" not in page.text
    bundled = httpx.get(base + "/dashboard/assets/chart.umd.min.js", timeout=10)
    assert bundled.status_code == 200
    assert hashlib.sha256(bundled.content).hexdigest() in VENDOR_README.read_text(encoding="utf-8")
    assert httpx.get(base + "/dashboard/assets/__init__.py", timeout=10).status_code == 404
    assert httpx.get(base + "/v1/aggregates/summary", timeout=10).status_code == 401

    visit.page.goto(base + "/dashboard")
    assert _wait_settled(visit.page) == "login"
    assert visit.page.is_visible("#token-form")
    assert not visit.page.is_visible("#content")
    assert not [url for url in visit.requests if "/v1/" in url]  # no token, no call
    assert visit.problems == []


def test_the_dashboard_shows_the_demo_data_and_switches_language(demo: Demo, visit: Visit) -> None:
    page = visit.page
    token = demo.token("dev-dashboard")
    page.goto(demo.dashboard(token))
    assert _wait_settled(page) == "ready", page.inner_text("#status")
    assert visit.problems == []

    # the token left the address bar at once and stays in this tab's sessionStorage only
    assert "token" not in page.url
    assert page.url.endswith("/dashboard")
    assert page.evaluate("() => sessionStorage.getItem('longgang-dashboard-token')") == token
    assert page.evaluate("() => localStorage.getItem('longgang-dashboard-token')") is None

    # Chinese by default, money in yuan
    assert page.get_attribute("html", "lang") == "zh-CN"
    chinese = _labels(page)
    assert chinese["title"] == "龙岗区人工智能扶持资金看板"
    assert chinese["issued"] == "已发放券额"
    assert page.input_value("#year") == str(THIS_YEAR)

    kpis = _kpis(page)
    for name in MONEY_FIGURES:
        fen, text = kpis[name]
        assert fen > 0, f"key figure {name} is {fen}: {text}"
    assert kpis["expired"][0] == 0  # nothing has expired in the demo: shown as ¥0.00, not hidden
    redeemed_fen, redeemed_text = kpis["redeemed"]
    assert redeemed_text == f"¥{redeemed_fen // 100:,}.{redeemed_fen % 100:02d}"  # fen / 100, zh-CN format

    for name in CHARTS:
        state = page.get_attribute(f'[data-chart="{name}"]', "data-chart-state")
        chart = _chart(page, name)
        assert state == "drawn", f"chart {name}: {state}"
        assert chart["drawn"], name
        values = [value for dataset in chart["datasets"] for value in dataset["data"]]
        assert any(value > 0 for value in values), f"chart {name} has no data: {chart['datasets']}"
        assert chart["painted"] > 1_000, f"chart {name}: only {chart['painted']} pixels drawn"
        assert chart["coloured"] > 20, f"chart {name}: no bar or line in a dataset's colour"
    assert _chart(page, "monthly")["labels"][0] == "1月"

    # only the page, its files and the aggregates API were asked for
    base = demo.url("vouchers")
    others = [
        url
        for url in visit.requests
        if not (url.startswith(base + "/dashboard") or url.startswith(base + "/v1/aggregates/"))
    ]
    assert others == []
    assert not [url for url in visit.requests if "top-enterprises" in url]  # the dashboard role sees no enterprise

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # the toggle: every label in English, the figures and charts redrawn in English
    page.click("#lang")
    assert page.get_attribute("html", "lang") == "en"
    english = _labels(page)
    assert english == {
        "title": "Longgang AI Measures — Programme Dashboard",
        "issued": "Vouchers issued",
        "monthly": "Issued and redeemed per month",
        "toggle": "中文",
        "year": "Year",
    }
    assert page.title() == english["title"]
    monthly = _chart(page, "monthly")
    assert monthly["labels"][0] == "Jan"
    assert monthly["datasets"][0]["label"] == "Issued"
    assert _kpis(page)["redeemed"][1].startswith("CN¥")
    untranslated = page.evaluate(
        """() => Array.from(document.querySelectorAll("[data-i18n]"))
            .filter((node) => /[\\u4e00-\\u9fff]/.test(node.textContent)).map((node) => node.dataset.i18n)"""
    )
    assert untranslated == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"), full_page=True)

    # the choice is remembered: a reload (token still in this tab) comes back in English
    page.reload()
    assert _wait_settled(page) == "ready"
    assert page.inner_text("h1") == english["title"]
    page.click("#lang")
    assert _labels(page) == chinese
    assert page.get_attribute("html", "lang") == "zh-CN"

    # another year: the page asks for that year (nothing happened in it: figures 0, charts say so)
    with page.expect_response(lambda response: f"summary?year={THIS_YEAR - 1}" in response.url):
        page.select_option("#year", str(THIS_YEAR - 1))
    assert _wait_settled(page) == "ready"
    assert page.get_attribute('[data-chart="monthly"]', "data-chart-state") == "empty"
    assert _kpis(page)["issued"][0] == 0
    assert visit.problems == []


def test_a_client_with_detail_also_sees_the_top_enterprises(demo: Demo, visit: Visit) -> None:
    detail = mint_token(DASHBOARD, DASHBOARD_DETAIL, name="dashboard with detail")
    visit.page.goto(demo.dashboard(detail))
    assert _wait_settled(visit.page) == "ready"
    assert visit.page.is_visible("#top-enterprises")
    assert visit.page.locator("#top-enterprises tbody tr").count() >= 1
    assert visit.problems == []


def test_errors_are_shown_plainly(demo: Demo, visit: Visit) -> None:
    page = visit.page
    page.goto(demo.dashboard("not-a-token"))
    assert _wait_settled(page) == "login"
    assert "401" in page.inner_text("#status")
    assert "令牌" in page.inner_text("#status")
    assert page.evaluate("() => sessionStorage.getItem('longgang-dashboard-token')") is None  # forgotten

    # a vendor's token: the role may not see the dashboard
    page.goto(demo.dashboard(demo.token("dev-vendor")))
    page.reload()  # (a new fragment alone does not reload the page)
    assert _wait_settled(page) == "error"
    assert "403" in page.inner_text("#status")
    assert not page.is_visible("#content")

    # the eligibility service goes away: its panels say 503, the ledger's figures are still drawn
    stop_services({"eligibility": demo.processes.pop("eligibility")})
    page.goto(demo.dashboard(demo.token("dev-dashboard")))
    page.reload()
    assert _wait_settled(page) == "ready"
    for name in ("applications", "queue"):
        assert page.get_attribute(f'[data-chart="{name}"]', "data-chart-state") == "error"
        assert "503" in page.inner_text(f'[data-chart="{name}"] .panel-message')
    assert "503" in page.inner_text("#status")
    assert page.get_attribute('[data-chart="monthly"]', "data-chart-state") == "drawn"
    assert visit.problems == []
