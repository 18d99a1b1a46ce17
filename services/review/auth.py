"""Who may use the console: the login gate, the FastAPI dependencies and the session cookie.

Every request except ``PUBLIC_PATHS`` needs a valid session (the gate middleware checks it,
so a route that forgets its dependency is still closed). Routes depend on ``require_reviewer``
or ``require_admin``, which also check the CSRF token on unsafe methods: the ``X-CSRF-Token``
header, or a ``csrf_token`` form field. No session: ``/api/`` answers 401 ``login_required``;
pages redirect (303) to ``/login?next=...``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pymongo.errors import PyMongoError

from services.review.accounts import (
    AccountStore,
    AuthPolicy,
    bootstrap_admin,
    resolve_session,
)
from services.review.accounts import Reviewer as Reviewer  # re-exported: the contract's home
from services.review.accounts import Role as Role
from services.review.settings import ReviewSettings
from services.shared.clients import parse_networks
from services.shared.errors import DomainError, Forbidden
from services.shared.http import request_client_key
from services.shared.tokens import same_hash

log = logging.getLogger(__name__)

# The icon is public too: browsers fetch it on every page, the login page included.
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/readyz", "/metrics", "/favicon.ico"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
FORM_CSRF_MAX_BYTES = 4 * 1024 * 1024  # a form bigger than this must send the header


_UNKNOWN = object()


class LoginRequired(DomainError):
    status = 401
    code = "login_required"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True)
class AuthContext:
    settings: ReviewSettings
    policy: AuthPolicy
    store: Callable[[], AccountStore]

    @property
    def secure(self) -> bool:
        return self.settings.secure_cookies()

    @property
    def session_cookie(self) -> str:
        # __Host-: the browser accepts it only Secure, for Path=/ and with no Domain.
        return "__Host-review_session" if self.secure else "review_session"

    @property
    def login_cookie(self) -> str:
        return "__Host-review_login" if self.secure else "review_login"

    def client(self, request: Request) -> str:
        proxies = parse_networks(self.settings.trusted_proxies.split(","))
        return request_client_key(request, self.policy.salt, proxies, "review-login")

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="strict")


def context(request: Request) -> AuthContext:
    ctx: AuthContext = request.app.state.review_auth
    return ctx


def now() -> datetime:
    return datetime.now(UTC)


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="/")


def safe_next(value: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme): open redirects stay closed."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _login_required(request: Request) -> LoginRequired:
    if request.url.path.startswith("/api/"):
        return LoginRequired("Log in to the review console first.")
    refusal = LoginRequired("Log in to the review console first.", status=303)
    refusal.headers = {"Location": login_url(request)}
    return refusal


async def current_reviewer(request: Request) -> Reviewer | None:
    """The session's reviewer (looked up once per request), or None."""
    found: object = getattr(request.state, "reviewer", _UNKNOWN)
    if found is not _UNKNOWN:
        return found if isinstance(found, Reviewer) else None
    ctx = context(request)
    token = request.cookies.get(ctx.session_cookie, "")
    reviewer = None
    if token:
        store = ctx.store()
        reviewer = await run_in_threadpool(resolve_session, store, ctx.policy, token, now())
    request.state.reviewer = reviewer
    return reviewer


async def _csrf_token_sent(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    kind = request.headers.get("content-type", "")
    declared = request.headers.get("content-length", "")
    if not kind.startswith(FORM_TYPES) or not declared.isdigit():
        return ""
    if int(declared) > FORM_CSRF_MAX_BYTES:
        return ""
    form = getattr(request, "_form", None)  # already parsed for a route with Form fields
    if form is None:
        await request.body()  # cached: the route can still read the body or its stream
        form = await request.form()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else ""


async def require_reviewer(request: Request) -> Reviewer:
    """FastAPI dependency: a signed-in reviewer (or admin); CSRF token on unsafe methods."""
    reviewer = await current_reviewer(request)
    if reviewer is None:
        raise _login_required(request)
    if request.method not in SAFE_METHODS:
        sent = await _csrf_token_sent(request)
        if not sent or not same_hash(sent, reviewer.csrf_token):
            raise CsrfFailed(
                "The form has expired or did not come from this console. Reload and try again.",
            )
    return reviewer


async def require_admin(request: Request) -> Reviewer:
    """FastAPI dependency: like ``require_reviewer``, and the reviewer must be an admin."""
    reviewer = await require_reviewer(request)
    if not reviewer.is_admin:
        raise Forbidden("Only an admin may do this.", code="admin_only")
    return reviewer


def install_auth(app: FastAPI, ctx: AuthContext) -> None:
    """Keep the context where the dependencies find it, and close every non-public path to
    requests without a valid session (before any body is read)."""
    app.state.review_auth = ctx

    @app.middleware("http")
    async def _login_gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path in PUBLIC_PATHS:
            return await call_next(request)
        try:
            reviewer = await current_reviewer(request)
        except PyMongoError as exc:
            log.warning("session lookup failed", extra={"err": type(exc).__name__})
            body: dict[str, Any] = {
                "code": "unavailable",
                "message": "The service is briefly unavailable. Please try again in a moment.",
            }
            return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
        if reviewer is None:
            refusal = _login_required(request)
            if refusal.status == 303:
                return RedirectResponse(login_url(request), status_code=303)
            return JSONResponse(refusal.to_dict(), status_code=401)
        return await call_next(request)


def bootstrap_admin_from_settings(settings: ReviewSettings, store: AccountStore) -> None:
    """At start: the first admin from CHATPIC_REVIEW_ADMIN_PASSWORD, if no admin exists yet."""
    if settings.review_admin_password is None:
        return
    created = bootstrap_admin(
        store,
        username=settings.review_admin_username,
        password=settings.review_admin_password.get_secret_value(),
        now=now(),
    )
    if created:
        log.info("first admin created", extra={"username": settings.review_admin_username})
