"""The API explorer, `GET /docs`: Swagger UI served from this package, never from a CDN (issue #12).

`/docs` is where people paste bearer tokens, so everything it runs comes from this origin:
Swagger UI is bundled under `vendor/` (pinned version, SHA-256 of each file in `VENDORED`
and in `vendor/README.md`; a file that does not match stops the service at start), the page
starts it with `docs.js` (no inline script), each script and stylesheet carries its
Subresource Integrity hash, and the page's Content-Security-Policy allows scripts, styles and
requests to this origin only. The validator badge (an outside service) is off, and
authorisation is not persisted in the browser's storage. ReDoc and the OAuth2 redirect page
are not served: the bearer scheme needs neither.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from shared.errors import NOT_FOUND, ProblemError

DIRECTORY = Path(__file__).resolve().parent
SWAGGER_UI_VERSION = "5.35.0"

#: URL name under /docs/assets/ → (file in this package, media type, SHA-256 of the file)
VENDORED: dict[str, tuple[str, str, str]] = {
    "swagger-ui-bundle.js": (
        "vendor/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        "e6a898692f2d768e807c3ba4626068a69a2c5dd960dd6c76f3e4d3a3de180af2",
    ),
    "swagger-ui.css": (
        "vendor/swagger-ui.css",
        "text/css; charset=utf-8",
        "5ed08757e53da3e026d6cbecc61fe5d43585c9560b302d534ad56692519a273d",
    ),
    "LICENSE-swagger-ui.txt": (
        "vendor/LICENSE",
        "text/plain; charset=utf-8",
        "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
    ),
    "NOTICE-swagger-ui.txt": (
        "vendor/NOTICE",
        "text/plain; charset=utf-8",
        "0d20d1adef18aee3f40dd258172155521ce702ac445cb5f7b7d60ed32dad2fb2",
    ),
}
OWN = {"docs.js": ("docs.js", "text/javascript; charset=utf-8")}

#: Only this origin; no inline script or style; no framing (clickjacking a token form), no referrer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="referrer" content="no-referrer">
  <link rel="icon" href="data:,">
  <title>{title}</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css" integrity="{css}">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="docs/assets/swagger-ui-bundle.js" integrity="{bundle}"></script>
  <script src="docs/assets/docs.js" integrity="{start}"></script>
</body>
</html>
"""


class TamperedAsset(RuntimeError):
    pass


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file the page loads, checked against its pinned SHA-256 (vendored files)."""
    assets: dict[str, tuple[bytes, str]] = {}
    for name, (file, media_type, sha256) in VENDORED.items():
        content = (DIRECTORY / file).read_bytes()
        if hashlib.sha256(content).hexdigest() != sha256:
            raise TamperedAsset(f"shared/apidocs/{file} does not match its pinned SHA-256 (vendor/README.md)")
        assets[name] = (content, media_type)
    for name, (file, media_type) in OWN.items():
        assets[name] = ((DIRECTORY / file).read_bytes(), media_type)
    return assets


def integrity(content: bytes) -> str:
    """A Subresource Integrity value (the browser refuses the file if it differs)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


def install_api_docs(app: FastAPI) -> None:
    """`GET /docs` and `GET /docs/assets/{name}` (public: they hold no data). Build the app with `docs_url=None`."""
    assets = load_assets()

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        page = PAGE.format(
            title=escape(app.title),
            openapi=escape(request.scope.get("root_path", "") + str(app.openapi_url)),
            css=integrity(assets["swagger-ui.css"][0]),
            bundle=integrity(assets["swagger-ui-bundle.js"][0]),
            start=integrity(assets["docs.js"][0]),
        )
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def api_docs_asset(name: str) -> Response:
        if name not in assets:
            raise ProblemError(NOT_FOUND)
        content, media_type = assets[name]
        return Response(content, media_type=media_type, headers=ASSET_HEADERS)
