"""`check_routes_protected`: an app with a route that says nothing about who may call it does not start."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.auth import ADMIN, AUDITOR, VENDOR, Principal, check_routes_protected, iter_routes, protected, require


def _app(*routers: APIRouter, **include: object) -> FastAPI:
    # as create_service_app builds it: FastAPI's own /docs, /redoc and OAuth2 redirect page are off
    # (shared/apidocs serves /docs); left on, they are routes without a rule, and refused
    app = FastAPI(docs_url=None, redoc_url=None)
    for router in routers:
        app.include_router(router, **include)  # type: ignore[arg-type]
    return app


def test_a_route_in_an_included_router_without_a_rule_is_found() -> None:
    router = APIRouter()

    @router.get("/v1/open")
    async def open_route() -> dict[str, str]:
        return {}

    @router.get("/v1/closed", dependencies=[require(ADMIN)])
    async def closed() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match=r"\['GET'\] /v1/open") as refused:
        check_routes_protected(_app(router))
    assert "/v1/closed" not in str(refused.value)


def test_nested_routers_and_prefixes_are_found() -> None:
    inner = APIRouter()

    @inner.post("/things")
    async def things() -> dict[str, str]:
        return {}

    outer = APIRouter()
    outer.include_router(inner, prefix="/inner")
    with pytest.raises(RuntimeError, match=r"\['POST'\] /v1/inner/things"):
        check_routes_protected(_app(outer, prefix="/v1"))


def test_every_way_of_declaring_a_rule_counts() -> None:
    router = APIRouter()

    @router.get("/v1/parameter")
    async def parameter(principal: Annotated[Principal, require(AUDITOR)]) -> dict[str, str]:
        return {}

    @router.get("/v1/dependency", dependencies=[require(ADMIN)])
    async def dependency() -> dict[str, str]:
        return {}

    @protected(VENDOR)
    async def bare(request: Request) -> JSONResponse:
        return JSONResponse({})

    router.add_route("/v1/bare", bare, methods=["POST"])
    by_router = APIRouter()

    @by_router.get("/v1/router-level")
    async def router_level() -> dict[str, str]:
        return {}

    app = _app(router)
    app.include_router(by_router, dependencies=[require(ADMIN)])

    check_routes_protected(app)
    paths = {str(route.path) for route in iter_routes(app)}
    assert {"/v1/parameter", "/v1/dependency", "/v1/bare", "/v1/router-level"} <= paths


def test_public_paths_need_no_rule() -> None:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    @router.get("/.well-known/jwks.json")
    async def keys() -> dict[str, str]:
        return {}

    check_routes_protected(_app(router))
    with pytest.raises(RuntimeError, match=r"/redoc"):  # FastAPI's ReDoc page (a CDN's code) is not public
        check_routes_protected(FastAPI(docs_url=None))


def test_require_refuses_unknown_scopes() -> None:
    with pytest.raises(ValueError, match="unknown scopes"):
        require("superuser")
    with pytest.raises(ValueError, match="unknown scopes"):
        require()
