"""Wires the console: `uvicorn --factory services.console.app:create_app`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from asgi_csrf import asgi_csrf_decorator
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import REALM
from shared.clock import Clock
from shared.http import problem_response
from shared.service import PeriodicJob, ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers
from .i18n import Translator, pick_locale
from .people import (
    CSRF_COOKIE,
    CSRF_FIELD,
    LANGUAGE_COOKIE,
    RENEWED,
    SESSION_COOKIE,
    NotPermitted,
    Renewals,
    SessionKeys,
    SignInNeeded,
    clear_session_cookie,
    set_session_cookie,
    translator_of,
)
from .store import UpstreamProblem, new_client
from .subscriptions import start_following, stop_following


async def check_live_feed(runtime: ServiceRuntime) -> str | None:
    return None if runtime.state.get("following") else "not following the event topics yet"


async def open_client(runtime: ServiceRuntime) -> None:
    runtime.state["http"] = new_client()


async def close_client(runtime: ServiceRuntime) -> None:
    client = runtime.state.pop("http", None)
    if client is not None:
        await client.aclose()


async def count_dead_letters(runtime: ServiceRuntime) -> None:
    """The dashboard's dead-letter figure, read from the dead-letter topics now and then rather than per page."""
    letters = await handlers.dead_letters(runtime.settings)
    runtime.state["dead_letter_count"] = sum(len(found) for found in letters.values())


SPEC = ServiceSpec(
    name="console",
    title="Ceper Supply — console",
    description="The cooperative staff's operations console: orders, plans, capacity, quality and live events.",
    routers=[api.router],
    on_start=[open_client, start_following],
    on_stop=[stop_following, close_client],
    readiness=[check_live_feed],
    jobs=[PeriodicJob("dead-letter-count", count_dead_letters, lambda settings: 30.0)],
)


def _wants_page(request: Request) -> bool:
    """A browser's page or form (answered with pages and redirects), rather than an API call or the stream."""
    return not request.url.path.startswith("/v1/") and request.url.path != "/live"


async def _sign_in_needed(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, SignInNeeded)
    runtime = request.app.state.runtime
    if not _wants_page(request):
        headers = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        response = problem_response(
            request, 401, "Sign-in required", "sign in to the console first", "unauthorized", headers=headers
        )
    else:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET" or request.headers.get("hx-request") == "true":
            back = request.headers.get("hx-current-url") or "/"
            back = back.split(str(request.base_url).rstrip("/"), 1)[-1] or "/"
        target = f"/login?next={quote(back, safe='/')}" + ("&ended=1" if problem.ended else "")
        if request.headers.get("hx-request") == "true":
            response = Response(status_code=401, headers={"HX-Redirect": target})
        else:
            response = RedirectResponse(target, status_code=303)
    if problem.ended:
        clear_session_cookie(response, runtime.settings)
    return response


async def _not_permitted(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, NotPermitted)
    if not _wants_page(request):
        return problem_response(request, 403, "Forbidden", str(problem), "forbidden")
    return api.render(request, "forbidden.html", translator_of(request), problem.person, status_code=403)


async def _refused(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, UpstreamProblem)
    tr = translator_of(request)
    person = getattr(request.state, "person", None)
    if problem.status == 401:
        return await _sign_in_needed(request, SignInNeeded(ended=True))
    if problem.status == 403 and person is not None:
        return api.render(request, "forbidden.html", tr, person, status_code=403)
    return api.unavailable(request, tr, person, problem)


def csrf_guard(app: ASGIApp, keys: SessionKeys, secure: bool) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Double-submit CSRF protection (asgi-csrf): every form and htmx post carries the token of a signed cookie.
    The login form is checked too, even before any session cookie exists (login CSRF)."""
    return asgi_csrf_decorator(  # type: ignore[no-any-return]  # asgi-csrf has no type hints
        cookie_name=CSRF_COOKIE,
        form_input=CSRF_FIELD,
        signing_secret=keys.csrf_secret,
        always_protect={"/login", "/logout", "/language"},
        cookie_secure=secure,
        cookie_samesite="Lax",
        send_csrf_failed=_csrf_failed,
    )(app)


async def _csrf_failed(scope: Scope, send: Send, _reason: Any) -> None:
    """A form without its token, or with a stale one: a short page in the person's language, nothing done."""
    cookies = SimpleCookie()
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            cookies.load(value.decode("latin-1"))
    language = cookies.get(LANGUAGE_COOKIE)
    tr = Translator(pick_locale(language.value if language else None))
    body = api.templates.get_template("expired_form.html").render(**api.template_globals(tr)).encode()
    await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})


def renewed_cookie(app: ASGIApp, keys: SessionKeys, settings: Settings) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """When a request renewed the person's sign-in, its answer carries the new session cookie, whatever the page
    answered (a page, a fragment, a redirect, the stream) and unless the answer ends the session itself."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_cookie(message: Any) -> None:
            renewed = (scope.get("state") or {}).get(RENEWED)
            if message["type"] == "http.response.start" and renewed is not None:
                headers = list(message.get("headers") or [])
                if not any(k == b"set-cookie" and v.startswith(SESSION_COOKIE.encode() + b"=") for k, v in headers):
                    carrier = Response()
                    set_session_cookie(carrier, keys, renewed, settings)
                    headers += [(k, v) for k, v in carrier.raw_headers if k == b"set-cookie"]
                    message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_cookie)

    return middleware


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    app = create_service_app(SPEC, settings, clock)
    runtime_settings = app.state.runtime.settings
    keys = SessionKeys.from_settings(runtime_settings)
    app.state.session_keys = keys
    app.state.renewals = Renewals()
    app.mount("/static", StaticFiles(directory=api.STATIC), name="static")
    app.add_exception_handler(UpstreamProblem, _refused)
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    app.add_exception_handler(NotPermitted, _not_permitted)
    app.add_middleware(renewed_cookie, keys=keys, settings=runtime_settings)  # type: ignore[arg-type]
    app.add_middleware(csrf_guard, keys=keys, secure=runtime_settings.env == "production")  # type: ignore[arg-type]
    return app
