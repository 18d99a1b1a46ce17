"""Login, logout, one's own password and preferences, and (admins) accounts: pages and API.

The login form has its own CSRF token (a double-submit cookie, since there is no session yet);
every other form and API call is checked by ``require_reviewer`` / ``require_admin``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.review import accounts, metrics
from services.review.accounts import AccountStore, LoginFailed, LoginLocked, Reviewer
from services.review.auth import (
    AuthContext,
    CsrfFailed,
    context,
    current_reviewer,
    now,
    require_admin,
    require_reviewer,
    safe_next,
)
from services.shared.errors import DomainError
from services.shared.http import wants_html
from services.shared.pages import Pages
from services.shared.tokens import new_token, same_hash

log = logging.getLogger(__name__)
Me = Annotated[Reviewer, Depends(require_reviewer)]
Admin = Annotated[Reviewer, Depends(require_admin)]
Field64 = Annotated[str, Form(max_length=64)]
Secret = Annotated[str, Form(max_length=1024)]
LOGIN_FORM_TTL_S = 3600


class NewAccountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    role: str = Field(default="reviewer", max_length=16)
    password: str | None = Field(default=None, max_length=1024)


class PasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(default=None, max_length=1024)


class PrefsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reveal_previews: StrictBool | None = None


def _account_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": doc["_id"],
        "role": doc["role"],
        "disabled": bool(doc.get("disabled")),
        "created_at": _iso(doc.get("created_at")),
        "created_by": doc.get("created_by"),
        "last_login_at": _iso(doc.get("last_login_at")),
    }


def _iso(value: object) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


def auth_router(pages: Pages, store: Callable[[], AccountStore]) -> APIRouter:
    router = APIRouter()

    # --- login and logout -------------------------------------------------------------

    def login_page(
        ctx: AuthContext,
        request: Request,
        status: int = 200,
        error: str = "",
        next_: str = "/",
        username: str = "",
    ) -> Response:
        # The login form's double-submit token: a browser keeps the one it already has, so a
        # second /login load in the background (a favicon fetch redirected here, another tab)
        # never invalidates the form on screen.
        kept = request.cookies.get(ctx.login_cookie, "")
        token = (
            kept
            if 20 <= len(kept) <= 64 and kept.replace("-", "").replace("_", "").isalnum()
            else new_token()
        )
        response = pages.render(
            "login.html", status, csrf_token=token, next=next_, error=error, username=username
        )
        ctx.set_cookie(response, ctx.login_cookie, token, LOGIN_FORM_TTL_S)
        return response

    @router.get("/login", include_in_schema=False)
    async def get_login(request: Request, next: str = "/") -> Response:
        ctx = context(request)
        if await current_reviewer(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return login_page(ctx, request, next_=safe_next(next))

    @router.post("/login", include_in_schema=False)
    async def post_login(
        request: Request,
        username: Field64 = "",
        password: Secret = "",
        csrf_token: Secret = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        ctx = context(request)
        html = wants_html(request)
        target = safe_next(next)
        expected = request.cookies.get(ctx.login_cookie, "")
        if not expected or not csrf_token or not same_hash(expected, csrf_token):
            refusal = CsrfFailed("The login form has expired. Please try again.")
            if html:
                return login_page(ctx, request, refusal.status, refusal.message, target, username)
            raise refusal
        client = ctx.client(request)
        try:
            session = await run_in_threadpool(
                lambda: accounts.login(
                    store(),
                    ctx.policy,
                    username=username,
                    password=password,
                    client=client,
                    now=now(),
                )
            )
        except (LoginFailed, LoginLocked) as exc:
            locked = isinstance(exc, LoginLocked)
            metrics.LOGINS.labels("locked" if locked else "failed").inc()
            if locked:
                log.warning("console login refused: locked out", extra={"client": client})
            if not html:
                raise
            page = login_page(ctx, request, exc.status, exc.message, target, username[:64])
            page.headers.update(exc.headers or {})
            return page
        metrics.LOGINS.labels("ok").inc()
        old = request.cookies.get(ctx.session_cookie, "")
        if old:  # never keep a session id from before the login (fixation)
            await run_in_threadpool(accounts.end_session, store(), ctx.policy, old)
        response: Response
        if html:
            response = RedirectResponse(target, status_code=303)
        else:
            body = {"username": session.username, "csrf_token": session.csrf_token}
            response = JSONResponse(body)
        ctx.set_cookie(response, ctx.session_cookie, session.token, ctx.policy.session_max_s)
        ctx.clear_cookie(response, ctx.login_cookie)
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request, me: Me) -> Response:
        ctx = context(request)
        token = request.cookies.get(ctx.session_cookie, "")
        await run_in_threadpool(accounts.end_session, store(), ctx.policy, token)
        response = RedirectResponse("/login", status_code=303)
        ctx.clear_cookie(response, ctx.session_cookie)
        return response

    # --- one's own password and preferences ------------------------------------------------

    @router.get("/password", include_in_schema=False)
    async def password_page(me: Me) -> Response:
        return pages.render("password.html", me=me)

    @router.post("/password", include_in_schema=False)
    async def change_password(request: Request, me: Me, current: Secret, new: Secret) -> Response:
        ctx = context(request)
        try:
            await run_in_threadpool(
                lambda: accounts.change_own_password(
                    store(), username=me.username, current=current, new=new, now=now()
                )
            )
        except DomainError as exc:
            return pages.render("password.html", exc.status, me=me, error=exc.message)
        # Every session ended with the change; this browser gets a fresh one.
        session = await run_in_threadpool(
            accounts.start_session, store(), ctx.policy, me.username, now()
        )
        fresh = Reviewer(me.username, me.role, session.csrf_token, me.prefs)
        response = pages.render("password.html", me=fresh, notice="Your password was changed.")
        ctx.set_cookie(response, ctx.session_cookie, session.token, ctx.policy.session_max_s)
        return response

    @router.get("/api/v1/me")
    async def get_me(me: Me) -> dict[str, Any]:
        """Who is logged in, the CSRF token to send as ``X-CSRF-Token``, and preferences."""
        return {
            "username": me.username,
            "role": me.role.value,
            "csrf_token": me.csrf_token,
            "prefs": me.prefs,
        }

    @router.post("/api/v1/me/prefs")
    async def put_prefs(me: Me, req: PrefsRequest) -> dict[str, Any]:
        changes = req.model_dump(exclude_none=True)
        prefs = await run_in_threadpool(
            lambda: accounts.set_prefs(store(), username=me.username, changes=changes)
        )
        return {"prefs": prefs}

    # --- accounts (admins) ---------------------------------------------------------------

    async def accounts_page(me: Reviewer, status: int = 200, **extra: Any) -> Response:
        docs = await run_in_threadpool(store().accounts.all)
        return pages.render(
            "accounts.html", status, me=me, accounts=docs, request_path="/accounts", **extra
        )

    @router.get("/accounts", include_in_schema=False)
    async def list_accounts_page(me: Admin, done: str = "") -> Response:
        notices = {"disabled": "Account disabled.", "enabled": "Account enabled."}
        return await accounts_page(me, notice=notices.get(done, ""))

    @router.post("/accounts", include_in_schema=False)
    async def create_account_form(
        me: Admin,
        username: Field64,
        role: Annotated[str, Form(max_length=16)] = "reviewer",
        password: Secret = "",
    ) -> Response:
        try:
            made = await run_in_threadpool(
                lambda: accounts.create_account(
                    store(),
                    username=username,
                    role=role,
                    password=password or None,
                    created_by=me.username,
                    now=now(),
                )
            )
        except DomainError as exc:
            return await accounts_page(me, exc.status, error=exc.message)
        if made.password is None:
            return await accounts_page(me, 201, notice=f"Account {made.username} added.")
        return await accounts_page(me, 201, one_time=made)

    @router.post("/accounts/{username}/disable", include_in_schema=False)
    async def disable_form(me: Admin, username: str) -> Response:
        return await _toggle_form(me, username, disabled=True)

    @router.post("/accounts/{username}/enable", include_in_schema=False)
    async def enable_form(me: Admin, username: str) -> Response:
        return await _toggle_form(me, username, disabled=False)

    async def _toggle_form(me: Reviewer, username: str, *, disabled: bool) -> Response:
        try:
            await run_in_threadpool(
                lambda: accounts.set_disabled(
                    store(), username=username, disabled=disabled, by=me.username
                )
            )
        except DomainError as exc:
            return await accounts_page(me, exc.status, error=exc.message)
        done = "disabled" if disabled else "enabled"
        return RedirectResponse(f"/accounts?done={done}", status_code=303)

    @router.post("/accounts/{username}/password", include_in_schema=False)
    async def reset_password_form(me: Admin, username: str) -> Response:
        try:
            generated = await run_in_threadpool(
                lambda: accounts.set_password(
                    store(), username=username, password=None, by=me.username, now=now()
                )
            )
        except DomainError as exc:
            return await accounts_page(me, exc.status, error=exc.message)
        one_time = {"username": accounts.normalize_username(username), "password": generated}
        return await accounts_page(me, one_time=one_time)

    @router.get("/api/v1/accounts")
    async def list_accounts(me: Admin) -> list[dict[str, Any]]:
        docs = await run_in_threadpool(store().accounts.all)
        return [_account_view(d) for d in docs]

    @router.post("/api/v1/accounts", status_code=201)
    async def create_account(me: Admin, req: NewAccountRequest) -> dict[str, Any]:
        """A new account; without ``password`` one is generated and returned once."""
        made = await run_in_threadpool(
            lambda: accounts.create_account(
                store(),
                username=req.username,
                role=req.role,
                password=req.password,
                created_by=me.username,
                now=now(),
            )
        )
        body: dict[str, Any] = {"username": made.username, "role": made.role.value}
        if made.password is not None:
            body["password"] = made.password
        return body

    @router.post("/api/v1/accounts/{username}/disable")
    async def disable_account(me: Admin, username: str) -> dict[str, Any]:
        return await _toggle(me, username, disabled=True)

    @router.post("/api/v1/accounts/{username}/enable")
    async def enable_account(me: Admin, username: str) -> dict[str, Any]:
        return await _toggle(me, username, disabled=False)

    async def _toggle(me: Reviewer, username: str, *, disabled: bool) -> dict[str, Any]:
        await run_in_threadpool(
            lambda: accounts.set_disabled(
                store(), username=username, disabled=disabled, by=me.username
            )
        )
        return {"username": accounts.normalize_username(username), "disabled": disabled}

    @router.post("/api/v1/accounts/{username}/password")
    async def reset_password(me: Admin, username: str, req: PasswordRequest) -> dict[str, Any]:
        """A new password (generated and returned once if none is given); sessions end."""
        generated = await run_in_threadpool(
            lambda: accounts.set_password(
                store(), username=username, password=req.password, by=me.username, now=now()
            )
        )
        return {"username": accounts.normalize_username(username), "password": generated}

    return router
