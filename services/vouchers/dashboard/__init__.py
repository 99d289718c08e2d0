"""The built-in dashboard page (issue #6): `GET /dashboard`, one HTML page with its script and styles.

The page and its files are public, like `/docs` (shared/auth.py lists them): they hold no data.
The page shows nothing until it is given an access token — in the URL fragment
(`/dashboard#token=…`, which browsers never send to a server; the page then removes it from the
address bar and keeps it in sessionStorage) or pasted into its form — and with that token it calls
only the aggregates API (`/v1/aggregates/...`, `Authorization: Bearer`). Charts are drawn with
Chart.js, bundled under `vendor/` (no CDN: the page works offline).

Only the files named in `ASSETS` are served, so nothing else in this package is reachable.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse

from shared.errors import NOT_FOUND, ProblemError

DIRECTORY = Path(__file__).resolve().parent

#: URL path under /dashboard/assets/ → (file in this package, media type)
ASSETS: dict[str, tuple[str, str]] = {
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "chart.umd.min.js": ("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
    "LICENSE-chart.js.md": ("vendor/LICENSE.md", "text/markdown; charset=utf-8"),
}

#: Everything the page loads comes from this origin; no inline script, no framing, no referrer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def install_dashboard(app: FastAPI) -> None:
    """Serve the page at `/dashboard` and its files at `/dashboard/assets/{name}` (both public)."""
    page = (DIRECTORY / "index.html").read_text(encoding="utf-8")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/dashboard/assets/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise ProblemError(NOT_FOUND)
        file, media_type = ASSETS[name]
        return FileResponse(DIRECTORY / file, media_type=media_type, headers=ASSET_HEADERS)
