"""HTTP conventions shared by every service: problem+json errors, request ids, RED metrics by route."""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .audit import current_actor
from .clock import use as use_clock
from .logging import get_logger
from .outbox import current_trace_id

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "x-request-id"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `body.lines.0.quantity`")
    message: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank", examples=["https://ceper.koperasi.id/problems/validation"])
    title: str = Field(examples=["Request is invalid"])
    status: int = Field(examples=[422])
    detail: str | None = Field(default=None, examples=["lines.0.quantity: must be greater than 0"])
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise from a handler or endpoint to answer with a problem+json body; nothing is committed."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(
        self, detail: str, *, status: int | None = None, title: str | None = None, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.errors = errors


class NotFound(ProblemError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class Unprocessable(ProblemError):
    status = 422
    title = "Request is invalid"
    type_slug = "validation"


_DESCRIPTIONS = {
    400: "The request is malformed",
    401: "Missing or invalid credentials",
    403: "Not allowed for this caller",
    404: "No such resource",
    409: "Conflicts with the current state (e.g. a duplicate)",
    422: "The request is invalid; `errors` names each offending field",
    500: "Unexpected server error; the request changed nothing",
    503: "A dependency (database or broker) is unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting the problem+json errors of an endpoint."""
    return {
        status: {"model": Problem, "description": _DESCRIPTIONS.get(status, "Error"), "content": {PROBLEM_JSON: {}}}
        for status in (*statuses, 500, 503)
    }


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrites an OpenAPI document so every error documented as a problem says `application/problem+json`
    with the Problem schema, as the handlers really answer (FastAPI would list `application/json`)."""
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                validation = "HTTPValidationError" in str(content.get("application/json", {}).get("schema", {}))
                if PROBLEM_JSON in content or (status == "422" and validation):
                    response["content"] = {PROBLEM_JSON: problem}
    return schema


def problem_response(
    request: Request | None,
    status: int,
    title: str,
    detail: str | None,
    slug: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=f"https://ceper.koperasi.id/problems/{slug}" if slug else "about:blank",
        title=title,
        status=status,
        detail=detail,
        instance=str(request.url.path) if request is not None else None,
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        errors=errors,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc.status, exc.title, exc.detail, exc.type_slug, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(
                field=".".join(str(p) for p in err.get("loc", ())), message=err.get("msg", "invalid"), type=err.get("type")
            )
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem_response(request, 422, "Request is invalid", detail, "validation", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # A body that is not JSON at all (e.g. not UTF-8) is as invalid as malformed JSON: one answer, 422.
            errors = [FieldError(field="body", message="not a JSON document", type="json_invalid")]
            return problem_response(request, 422, "Request is invalid", "body: not a JSON document", "validation", errors)
        title = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 403: "Forbidden"}.get(exc.status_code, "Error")
        return problem_response(request, exc.status_code, title, str(exc.detail), "", headers=getattr(exc, "headers", None))

    # Unexpected errors are answered by RequestContextMiddleware, inside the request's context (its id).


class RequestContextMiddleware:
    """Binds a request id to logs and staged events, and records RED metrics by route template."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, REQUEST_ID_HEADER.encode()) or uuid.uuid4().hex
        status_holder: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        started = time.perf_counter()
        runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        if runtime is not None:
            use_clock(runtime.clock)  # each request runs in its own context: give it the service's clock
        token = current_trace_id.set(request_id)
        actor_token = current_actor.set(None)  # a route's rule names the caller; nobody until then
        structlog.contextvars.bind_contextvars(service=self.service, request_id=request_id, trace_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answered here rather than by an outer handler, so the answer and the log line carry the request id.
            if status_holder.get("started"):
                raise
            unavailable = (
                isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, ConnectionError))
                or _database_unreachable(exc)
                or (isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)  # the server cut the connection
            )
            if _value_refused(exc):
                # The database refused a value the request carried (a NUL character, text longer than its
                # column): the request is at fault, and its transaction rolled back.
                log.warning("value refused by the database", path=scope.get("path"), error=str(getattr(exc, "orig", exc))[:200])
                answer = problem_response(
                    Request(scope), 422, "Request is invalid",
                    "A value cannot be stored: text with a NUL character, or longer than allowed.", "validation",
                )  # fmt: skip
                await answer(scope, receive, send_with_id)
                return
            log.exception("unhandled error" if not unavailable else "dependency unavailable", path=scope.get("path"))
            if unavailable:
                answer = problem_response(
                    Request(scope), 503, "Service unavailable", "The database is unavailable; the request changed nothing. Retry later.",
                    "unavailable", headers={"Retry-After": "5"},
                )  # fmt: skip
            else:
                answer = problem_response(
                    Request(scope),
                    500,
                    "Internal server error",
                    "The request changed nothing; try again or report the request id.",
                    "internal",
                )
            await answer(scope, receive, send_with_id)
        finally:
            current_trace_id.reset(token)
            current_actor.reset(actor_token)
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(self.service, method, template, str(status_holder["status"])).inc()
            metrics.HTTP_DURATION.labels(self.service, method, template).observe(time.perf_counter() - started)


# SQLSTATEs of a database that is there but takes no connection: connection exceptions (class 08), too many
# connections, shutting down or starting up, and "not currently accepting connections".
_UNREACHABLE_STATES = ("08", "53300", "57P01", "57P02", "57P03", "55000")


def _database_unreachable(exc: Exception) -> bool:
    """PostgreSQL refused the connection itself (the driver reports it as a plain database error)."""
    return _sqlstate(exc).startswith(_UNREACHABLE_STATES)


def _sqlstate(exc: Exception) -> str:
    if isinstance(exc, sa.exc.DBAPIError):
        for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
            state = str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "")
            if state:
                return state
    return ""


def _value_refused(exc: Exception) -> bool:
    """The database refused a value as data (SQLSTATE class 22), e.g. a NUL character or a too-long string, or
    the driver could not even send it (a number beyond 64 bits for SQLite)."""
    if isinstance(exc, (sa.exc.DataError, OverflowError)):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
            if str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "").startswith("22"):
                return True
    return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            decoded: str = value.decode("latin-1").strip()
            # Only ids that are safe to echo into logs and headers.
            if 0 < len(decoded) <= 128 and all(c.isalnum() or c in "-_.:" for c in decoded):
                return decoded
    return None
