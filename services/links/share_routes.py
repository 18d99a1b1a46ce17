"""What a recipient sees: the share page (counts nothing), the reveal (spends one view and hands
out a single-use ticket), the view page and the image URL that redeems the ticket once.

Link expanders, HEAD and prefetches never spend a view and never receive image bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from services.links import domain, metrics
from services.links.passwords import InvalidPassword
from services.links.ports import Ports
from services.links.settings import LinksSettings
from services.links.visitors import Viewer, is_automated
from services.shared.clients import parse_networks
from services.shared.errors import DomainError, Forbidden
from services.shared.http import request_client_key, wants_html
from services.shared.imageserve import IMAGE_HEADERS, image_response
from services.shared.pages import Pages

# Ended links that may still be reported (the viewing that used a link up is often what shows
# the recipient something to report).
REPORTABLE = ("used_up", "expired", "revoked", "removed", "session_ended", "viewer_used_up")
MAX_FORM_BYTES = 4096
# Refusals a browser's reveal answers with the share page again (its form and the sentence).
_ASK_AGAIN = ("password_required", "wrong_password", "invalid_password", "rate_limited")


class Automated(Forbidden):
    code = "automated_request"


def _refuse_automated(request: Request, route: str) -> None:
    if is_automated(request.headers.get("user-agent"), request.headers):
        metrics.AUTOMATED.labels(route).inc()
        raise Automated("Previews and prefetches do not open photos. Open the link yourself.")


async def _password_from(request: Request) -> str | None:
    """The optional password of a reveal: a form field or a JSON member."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data", "application/json"):
        return None
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise DomainError("The request body is too large.", code="too_large", status=413)
    if kind == "application/json":
        try:
            value: Any = json.loads(body or b"{}")
        except ValueError:
            raise DomainError("The body is not valid JSON.", code="malformed_request") from None
        password = value.get("password") if isinstance(value, dict) else None
    else:
        form = await request.form()
        password = form.get("password")
    if password is None:
        return None
    if not isinstance(password, str):  # {"password": 123}, {"password": {...}}, a file part
        raise InvalidPassword("The password must be text.")
    return password or None


@dataclass(frozen=True)
class Target:
    """How the visitor named the link: a share token (``/s/{token}``) or a gallery entry's
    public id (``/g/{public_id}``). Both go through the same describe/reveal flow."""

    token: str = ""
    public_id: str | None = None

    @property
    def page(self) -> str:
        return f"/g/{self.public_id}" if self.public_id is not None else f"/s/{self.token}"

    @property
    def report(self) -> str:
        """Where its report form posts."""
        if self.public_id is not None:
            return f"/gallery/{self.public_id}/report"
        return f"/s/{self.token}/report"


def share_router(settings: LinksSettings, pages: Pages, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()
    proxies = parse_networks(settings.trusted_proxies.split(","))
    password_max = settings.password_max_length  # the share page's input takes no more

    def gone_page(exc: DomainError, target: Target | None = None) -> Response:
        reportable = target if target is not None and exc.code in REPORTABLE else None
        return pages.render("gone.html", exc.status, exc.headers, error=exc, target=reportable)

    async def describe(target: Target) -> domain.LinkView:
        p = ports()
        return await run_in_threadpool(
            lambda: domain.describe(
                images=p.images,
                links=p.links,
                salt=salt,
                token=target.token,
                public_id=target.public_id,
            )
        )

    async def share_page(target: Target, request: Request) -> Response:
        if is_automated(request.headers.get("user-agent"), request.headers):
            # A preview card: no lookups, no state, no image (not even a thumbnail).
            metrics.AUTOMATED.labels("share" if target.public_id is None else "gallery").inc()
            return pages.render("card.html")
        try:
            view = await describe(target)
        except DomainError as exc:
            return gone_page(exc, target)
        return pages.render("share.html", view=view, target=target, password_max=password_max)

    async def reveal(target: Target, request: Request) -> Response:
        p = ports()
        html = wants_html(request)
        try:
            _refuse_automated(request, "reveal")
            viewer = Viewer(
                key=request_client_key(request, salt, proxies, "viewer"),
                password=await _password_from(request),
            )
            ticket = await run_in_threadpool(
                lambda: domain.reveal(
                    images=p.images,
                    links=p.links,
                    viewers=p.viewers,
                    tickets=p.tickets,
                    passwords=p.passwords,
                    salt=salt,
                    token=target.token,
                    public_id=target.public_id,
                    viewer=viewer,
                    ticket_ttl_s=settings.ticket_ttl_s,
                )
            )
        except DomainError as exc:
            metrics.REVEALS.labels(exc.code).inc()
            if not html:
                raise
            if exc.code in _ASK_AGAIN:
                return await _share_again(target, exc)
            return gone_page(exc, target)
        metrics.REVEALS.labels("granted").inc()
        if html:  # post/redirect/get: reloading the view page never re-posts a reveal
            return RedirectResponse(f"/v/{ticket.ticket}", status_code=303)
        return JSONResponse(
            {
                "ticket": ticket.ticket,
                "image_url": f"/v/{ticket.ticket}/image",
                "expires_at": ticket.expires_at.isoformat(),
                "views_left": ticket.views_left,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _share_again(target: Target, exc: DomainError) -> Response:
        try:
            view = await describe(target)
        except DomainError as gone:
            return gone_page(gone, target)
        return pages.render(
            "share.html",
            exc.status,
            exc.headers,
            view=view,
            target=target,
            error=exc,
            password_max=password_max,
        )

    @router.api_route(
        "/s/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    async def share_by_token(token: str, request: Request) -> Response:
        return await share_page(Target(token=token), request)

    @router.post("/s/{token}/reveal")
    async def reveal_by_token(token: str, request: Request) -> Response:
        return await reveal(Target(token=token), request)

    @router.api_route(
        "/g/{public_id}",
        methods=["GET", "HEAD"],
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def gallery_entry(public_id: str, request: Request) -> Response:
        """A gallery card opens this: the same page as a share link (views left, expiry)."""
        return await share_page(Target(public_id=public_id), request)

    @router.post("/g/{public_id}/reveal")
    async def reveal_gallery_entry(public_id: str, request: Request) -> Response:
        """Spends one view of the public link, exactly like ``/s/{token}/reveal``."""
        return await reveal(Target(public_id=public_id), request)

    @router.get("/v/{ticket}", response_class=HTMLResponse, include_in_schema=False)
    async def view_page(ticket: str, request: Request) -> Response:
        p = ports()
        try:
            _refuse_automated(request, "view")
            await run_in_threadpool(
                lambda: domain.check_ticket(
                    images=p.images, tickets=p.tickets, salt=salt, ticket=ticket
                )
            )
        except DomainError as exc:
            return gone_page(exc)
        return pages.render("view.html", ticket=ticket)

    @router.api_route("/v/{ticket}/image", methods=["GET", "HEAD"])
    async def image(ticket: str, request: Request) -> Response:
        p = ports()
        try:
            _refuse_automated(request, "image")
            if request.method == "HEAD":  # says whether the ticket is good; spends nothing
                await run_in_threadpool(
                    lambda: domain.check_ticket(
                        images=p.images, tickets=p.tickets, salt=salt, ticket=ticket
                    )
                )
                return Response(headers=IMAGE_HEADERS)
            served = await run_in_threadpool(
                lambda: domain.redeem_ticket(
                    images=p.images, tickets=p.tickets, blobs=p.blobs, salt=salt, ticket=ticket
                )
            )
        except DomainError as exc:
            metrics.TICKETS.labels(exc.code).inc()
            raise
        metrics.TICKETS.labels("served").inc()
        metrics.BYTES_SERVED.inc(len(served.data))
        return image_response(served.data, served.content_type)

    return router
