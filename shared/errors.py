"""Errors as RFC 9457 problem+json, with a stable machine `code` and bilingual messages.

Every error a client can see is an `ErrorCode`: a stable code, an HTTP status and a
message template in Chinese and English. The language follows `Accept-Language`
(Chinese unless the client prefers English). Field-level problems go in `errors`, each
with the field path, its own code and message. Handlers below turn validation errors,
unknown routes and unexpected exceptions into the same shape, so a client only ever
has one error format to parse, and a 500 never leaks a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from http import HTTPStatus
from typing import Any, Literal

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.context import request_id_var

logger = logging.getLogger("shared.errors")

Language = Literal["zh", "en"]
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:longgang-ai:problem:"


@dataclass(frozen=True)
class ErrorCode:
    """A kind of error clients can rely on: its code never changes once published."""

    code: str
    status: int
    zh: str
    en: str
    clause: str | None = None

    def message(self, language: Language, params: Mapping[str, Any]) -> str:
        template = self.zh if language == "zh" else self.en
        try:
            return template.format(**params)
        except (KeyError, IndexError, ValueError):
            return template


@dataclass
class FieldError:
    """One problem with one input field (a JSON pointer-ish dotted path)."""

    field: str
    code: str
    zh: str
    en: str
    extra: dict[str, Any] = dataclass_field(default_factory=dict)

    def render(self, language: Language) -> dict[str, Any]:
        return {
            "field": self.field,
            "code": self.code,
            "message": self.zh if language == "zh" else self.en,
            **self.extra,
        }


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem+json document."""

    def __init__(
        self,
        error: ErrorCode,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(f"{error.code}: {error.en}")
        self.error = error
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.params = params


# --- the common catalogue; services add their own codes next to their domain -----------

VALIDATION_FAILED = ErrorCode(
    "validation_failed", 422, "请求内容未通过校验：{count} 处错误", "The request is invalid: {count} error(s)"
)
NOT_FOUND = ErrorCode("not_found", 404, "资源不存在", "The resource does not exist")
ROUTE_NOT_FOUND = ErrorCode("route_not_found", 404, "接口不存在：{path}", "No such endpoint: {path}")
METHOD_NOT_ALLOWED = ErrorCode(
    "method_not_allowed", 405, "该接口不支持 {method} 方法", "Method {method} is not allowed here"
)
CONFLICT = ErrorCode("conflict", 409, "与现有数据冲突", "Conflicts with existing data")
INVALID_CURSOR = ErrorCode("invalid_cursor", 400, "分页游标无效或已过期", "The pagination cursor is invalid or expired")
UNSUPPORTED_MEDIA_TYPE = ErrorCode(
    "unsupported_media_type", 415, "不支持的内容类型：{content_type}", "Unsupported content type: {content_type}"
)
PAYLOAD_TOO_LARGE = ErrorCode(
    "payload_too_large", 413, "请求体过大（上限 {limit} 字节）", "Request body too large (limit {limit} bytes)"
)
HTTP_ERROR = ErrorCode("http_error", 400, "请求无法处理", "The request cannot be processed")
DATABASE_UNAVAILABLE = ErrorCode(
    "database_unavailable", 503, "数据库暂不可用，请稍后重试", "The database is unavailable; retry later"
)
SERVICE_BUSY = ErrorCode(
    "service_busy",
    503,
    "服务繁忙（暂无空闲的数据库连接），请稍后重试",
    "The service is busy (no database connection is free); retry later",
)
PEER_UNAVAILABLE = ErrorCode(
    "peer_unavailable",
    503,
    "依赖服务 {peer} 暂不可用，未做任何更改，请稍后重试",
    "The {peer} service is unavailable; nothing was changed, retry later",
)
UNSTORABLE_TEXT = ErrorCode(
    "unstorable_text",
    422,
    "文本中含有无法保存的字符（如 U+0000 空字符）：请求未做任何更改",
    "The text contains a character that cannot be stored (such as U+0000, NUL); nothing was changed",
)
INTERNAL_ERROR = ErrorCode(
    "internal_error",
    500,
    "服务器内部错误，已记录（请求号 {request_id}）",
    "Internal error, logged (request {request_id})",
)

_STATUS_CODES: dict[int, ErrorCode] = {404: NOT_FOUND, 409: CONFLICT, 413: PAYLOAD_TOO_LARGE}


_TITLES_ZH = {
    400: "请求错误",
    401: "未认证",
    403: "无权访问",
    404: "未找到",
    405: "方法不允许",
    409: "冲突",
    413: "请求体过大",
    415: "不支持的内容类型",
    422: "无法处理的内容",
    429: "请求过多",
    500: "服务器内部错误",
    503: "服务暂不可用",
}


def status_title(status: int, language: Language) -> str:
    """RFC 9457 `title`: the same for every occurrence of a status; `detail` says what happened."""
    if language == "zh" and status in _TITLES_ZH:
        return _TITLES_ZH[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def negotiate_language(accept_language: str | None) -> Language:
    """Chinese unless the client's first supported preference is English."""
    if not accept_language:
        return "zh"
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh") or tag == "*":
            return "zh"
    return "zh"


def request_language(request: Request) -> Language:
    return negotiate_language(request.headers.get("accept-language"))


#: Told of every problem answered (shared/metrics.py counts them by code; a service may count more).
ProblemObserver = Callable[[ErrorCode], None]
_problem_observers: list[ProblemObserver] = []


def observe_problems(observer: ProblemObserver) -> None:
    """Call `observer` with the error of every problem+json answer from now on (once per observer)."""
    if observer not in _problem_observers:
        _problem_observers.append(observer)


def problem_response(
    request: Request,
    error: ErrorCode,
    *,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    **params: Any,
) -> JSONResponse:
    for observer in _problem_observers:
        observer(error)
    language = request_language(request)
    request_id = request_id_var.get()
    params = {"request_id": request_id, **params}
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": status_title(error.status, language),
        "status": error.status,
        "code": error.code,
        "detail": error.message(language, params),
        "instance": request.url.path,
        "request_id": request_id,
    }
    if error.clause:
        body["clause"] = error.clause
    for key, value in params.items():
        if key not in body and not key.startswith("_") and not key.endswith("_zh"):
            body[key] = value
    if errors:
        body["errors"] = [item.render(language) for item in errors]
    return JSONResponse(
        body,
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers={"Content-Language": language, **(headers or {})},
    )


# --- pydantic's error types, in Chinese ------------------------------------------------

_PYDANTIC_ZH: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段",
    "json_invalid": "JSON 格式错误",
    "json_type": "需要 JSON 内容",
    "string_type": "应为字符串",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数（金额以分为单位，不能有小数）",
    "float_type": "应为数字",
    "bool_type": "应为布尔值",
    "bool_parsing": "应为布尔值",
    "date_type": "应为日期",
    "date_parsing": "日期格式应为 YYYY-MM-DD",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD",
    "datetime_parsing": "时间格式应为 ISO 8601",
    "datetime_from_date_parsing": "时间格式应为 ISO 8601",
    "timezone_aware": "时间须带时区偏移（如 +08:00 或 Z）",
    "uuid_parsing": "应为 UUID",
    "uuid_type": "应为 UUID",
    "list_type": "应为数组",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "enum": "取值不在允许范围内",
    "literal_error": "取值不在允许范围内",
    "greater_than": "数值过小",
    "greater_than_equal": "数值过小",
    "less_than": "数值过大",
    "less_than_equal": "数值过大",
    "string_too_short": "字符串过短",
    "string_too_long": "字符串过长",
    "string_pattern_mismatch": "格式不正确",
    "too_short": "元素过少",
    "too_long": "元素过多",
    "union_tag_invalid": "类型标签无效",
    "union_tag_not_found": "缺少类型标签",
    "value_error": "取值无效",
    "decimal_parsing": "应为数字",
    "decimal_type": "应为数字",
    "url_parsing": "网址格式不正确",
}

#: Our own field-level codes raised with `PydanticCustomError(code, en, ctx)`; Chinese here.
CUSTOM_FIELD_MESSAGES_ZH: dict[str, str] = {}


def register_field_messages(messages: Mapping[str, str]) -> None:
    """Services register the Chinese templates of their own field error codes."""
    CUSTOM_FIELD_MESSAGES_ZH.update(messages)


def _field_path(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def field_errors_from_pydantic(raw: Sequence[Mapping[str, Any]], prefix: Sequence[int | str] = ()) -> list[FieldError]:
    result: list[FieldError] = []
    for item in raw:
        code = str(item.get("type", "value_error"))
        context = dict(item.get("ctx") or {})
        en = str(item.get("msg", code))
        if code in CUSTOM_FIELD_MESSAGES_ZH:
            zh = CUSTOM_FIELD_MESSAGES_ZH[code].format(**context)
        else:
            zh = _PYDANTIC_ZH.get(code, "取值无效")
            if code == "value_error":
                zh = f"{zh}：{en.removeprefix('Value error, ')}"
        extra = {
            k: v
            for k, v in context.items()
            if isinstance(v, str | int | bool) and k != "error" and not k.endswith("_zh")
        }
        result.append(FieldError(_field_path([*prefix, *item.get("loc", ())]), code, zh, en, extra))
    return result


def validation_problem(errors: Sequence[FieldError]) -> ProblemError:
    return ProblemError(VALIDATION_FAILED, errors=errors, count=len(errors))


# --- handlers --------------------------------------------------------------------------


def problem_error_response(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(request, exc.error, errors=exc.errors, headers=exc.headers, **exc.params)


async def _problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_error_response(request, exc)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors_from_pydantic(exc.errors())
    return problem_response(request, VALIDATION_FAILED, errors=errors, count=len(errors))


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and exc.detail == "Not Found":
        return problem_response(request, ROUTE_NOT_FOUND, headers=headers, path=request.url.path)
    if exc.status_code == 405:
        return problem_response(request, METHOD_NOT_ALLOWED, headers=headers, method=request.method)
    error = _STATUS_CODES.get(exc.status_code)
    if error is None:
        error = ErrorCode(HTTP_ERROR.code, exc.status_code, HTTP_ERROR.zh, HTTP_ERROR.en)
    return problem_response(request, error, headers=headers)


async def _database_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("database unavailable", exc_info=exc)
    return problem_response(request, DATABASE_UNAVAILABLE, headers={"Retry-After": "2"})


async def _pool_timeout_handler(request: Request, exc: Exception) -> JSONResponse:
    """Every pooled connection stayed busy for `<PREFIX>DB_POOL_TIMEOUT_SECONDS`: overload, not a bug."""
    logger.warning("no database connection free: %s", exc)
    return problem_response(request, SERVICE_BUSY, headers={"Retry-After": "1"})


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return problem_response(request, INTERNAL_ERROR)


#: asyncpg's errors that mean "the database cannot serve us right now": the connection is gone or broken (class
#: 08), the server is starting up, shutting down or in recovery (57P01-57P03), or it has no connection left
#: (53300). The redemption path uses asyncpg directly, and SQLAlchemy wraps these without marking them as
#: disconnects when they happen on connect; either way the answer is 503 + Retry-After, never a 500.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def _is_dead_connection(exc: BaseException) -> bool:
    """asyncpg's symptom of a session the server ended while the connection sat idle in a pool: the unsolicited
    FATAL error leaves its protocol waiting, and the next query fails with `InternalClientError: cannot switch to
    state 12; another operation (2) is in progress` (MagicStack/asyncpg#1069). Other InternalClientErrors are bugs."""
    return isinstance(exc, asyncpg.exceptions.InternalClientError) and str(exc).startswith("cannot switch to state")


async def _client_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if _is_dead_connection(exc):
        return await _database_handler(request, exc)
    return await _unexpected_handler(request, exc)


def _is_connection_problem(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    cause = exc.orig.__cause__ if exc.orig is not None else None
    return any(isinstance(e, DATABASE_UNAVAILABLE_ERRORS) or _is_dead_connection(e) for e in (exc.orig, cause) if e)


#: PostgreSQL refuses text it cannot store: NUL in a text value (character_not_in_repertoire, 22021) or in a JSON
#: string (untranslatable_character, 22P05). JSON and URLs can carry U+0000, so this is the client's input: a
#: 422, whichever query it reached (a filter, a key, a stored field), and the transaction is rolled back.
UNSTORABLE_TEXT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)


def _is_unstorable_text(exc: DBAPIError) -> bool:
    cause = exc.orig.__cause__ if exc.orig is not None else None
    return any(isinstance(e, UNSTORABLE_TEXT_ERRORS) for e in (exc.orig, cause) if e)


async def _unstorable_text_handler(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, UNSTORABLE_TEXT)


async def _dbapi_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _is_connection_problem(exc):
        return await _database_handler(request, exc)
    if _is_unstorable_text(exc):
        return await _unstorable_text_handler(request, exc)
    return await _unexpected_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(DBAPIError, _dbapi_handler)
    app.add_exception_handler(ConnectionError, _database_handler)
    app.add_exception_handler(TimeoutError, _database_handler)
    app.add_exception_handler(PoolTimeoutError, _pool_timeout_handler)
    for error in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _database_handler)
    app.add_exception_handler(asyncpg.exceptions.InternalClientError, _client_error_handler)
    for error in UNSTORABLE_TEXT_ERRORS:  # the redemption path uses asyncpg directly
        app.add_exception_handler(error, _unstorable_text_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
