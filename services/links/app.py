"""Links HTTP transport: create links and the owner's actions. Share pages and reveals live in
share_routes, the end-of-session heartbeat in session_routes, reports in report_routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, Form, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from services.links import creation, metrics, owner
from services.links.appeal_routes import appeal_router
from services.links.background import background
from services.links.gallery_routes import gallery_router
from services.links.options import (
    LinkRequest,
    OwnerRequest,
    form_bool,
    form_expiry,
    form_int,
    resolve,
)
from services.links.ports import Ports, ports_opener
from services.links.report_routes import report_router
from services.links.session_routes import session_router
from services.links.settings import LinksSettings
from services.links.share_routes import share_router
from services.shared.errors import DomainError
from services.shared.jobrepo import JobRepo
from services.shared.linkrepo import LinkRepo
from services.shared.pages import Pages
from services.shared.ratelimit import RateLimiter
from services.shared.repos import ImageRepo, ReportRepo, now
from services.shared.service import Service, create_service_app
from services.shared.tokens import new_token


def bearer(authorization: str | None) -> str:
    """The owner key of an owner action. None sent (no header, another scheme, an empty key):
    401 ``owner_key_missing`` with a Bearer challenge. A key that is sent but wrong (however
    long) gets the action's own 404, the same as for an unknown id: no oracle."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        missing = DomainError(
            "Send the owner key as 'Authorization: Bearer <key>'.",
            code="owner_key_missing",
            status=401,
        )
        missing.headers = {"WWW-Authenticate": 'Bearer realm="chatpic-owner"'}
        raise missing
    return value.strip()


_REQUEST_KEY = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def request_key(value: str | None) -> str | None:
    """A creation request's one-time key (the form's hidden ``idempotency_key``, the API's
    ``Idempotency-Key`` header): 8 to 128 letters, digits or ``._:-``; none given is None."""
    if value is None or not value.strip():
        return None
    key = value.strip()
    if not _REQUEST_KEY.fullmatch(key):
        raise DomainError(
            "The Idempotency-Key must be 8 to 128 letters, digits or ._:- characters.",
            code="invalid_idempotency_key",
        )
    return key


def create_app(settings: LinksSettings, ports: Ports | None = None) -> FastAPI:
    pages = Pages("services.links")
    salt = settings.salt()
    service: Service[Ports] = Service()
    app = create_service_app(
        name="links",
        settings=settings,
        service=service,
        open_ports=ports_opener(settings),
        given=ports,
        background=None if ports is not None else background(settings),
    )

    def new_link(req: LinkRequest, key: str | None = None) -> creation.CreatedLink:
        p = service.ports
        try:
            created = creation.create_link(
                images=p.images,
                links=p.links,
                salt=salt,
                image_id=req.image_id,
                owner_token=req.owner_token,
                options=resolve(req, settings, now()),
                session_grace_s=settings.session_grace_s,
                record_retention_s=settings.link_record_retention_s,
                request_key=key,
            )
        except DomainError as exc:
            metrics.LINK_REFUSED.labels(exc.code).inc()
            raise
        o = created.options
        chosen = (
            ("per_viewer", o.max_views_per_viewer is not None),
            ("session", o.end_of_session),
            ("password", o.password_hash is not None),
            ("gallery", o.gallery_category is not None),
        )
        kinds = [kind for kind, on in chosen if on]
        for kind in kinds or ["plain"]:
            metrics.LINKS_CREATED.labels(kind).inc()
        return created

    def share_url(token: str) -> str:
        return f"{settings.links_public_url.rstrip('/')}/s/{token}"

    def gallery_info(created: creation.CreatedLink) -> dict[str, Any] | None:
        g = created.gallery
        if g is None:
            return None
        base = settings.links_public_url.rstrip("/")
        return {
            "category": g.category,
            "public_id": g.public_id,
            "listed_at": g.listed_at.isoformat(),
            "url": f"{base}/g/{g.public_id}",
            "gallery_url": f"{base}/gallery/{g.category}",
        }

    def session_info(created: creation.CreatedLink) -> dict[str, Any] | None:
        if created.session_key is None:
            return None
        base = settings.links_public_url.rstrip("/")
        ws = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return {
            "key": created.session_key,
            "websocket_url": f"{ws}/api/v1/links/{created.link_id}/session",
            "heartbeat_url": f"{base}/api/v1/links/{created.link_id}/heartbeat",
            "interval_s": settings.session_heartbeat_s,
            "grace_s": settings.session_grace_s,
            "alive_until": created.alive_until.isoformat(),
        }

    def describe_created(created: creation.CreatedLink) -> dict[str, Any]:
        o = created.options
        return {
            "link_id": created.link_id,
            "token": created.token,
            "url": share_url(created.token),
            "image_id": created.image_id,
            "expires_at": created.expires_at.isoformat(),
            "max_views": o.max_views,
            "max_views_per_viewer": o.max_views_per_viewer,
            "end_of_session": o.end_of_session,
            "password": o.password_hash is not None,
            "session": session_info(created),
            "gallery": gallery_info(created),
        }

    @app.post("/api/v1/links", status_code=201)
    async def create(
        req: LinkRequest,
        idempotency_key: Annotated[
            str | None,
            Header(
                max_length=256,
                description="Optional one-time key: a repeat of this request with the same "
                "key (and image) makes no second link and answers 409 already_created with "
                "the first link's link_id.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        key = request_key(idempotency_key)
        created = await run_in_threadpool(new_link, req, key)
        return describe_created(created)

    @app.post("/links/new", response_class=HTMLResponse, include_in_schema=False)
    async def create_form(
        image_id: Annotated[str, Form(max_length=64)],
        owner_token: Annotated[str, Form(max_length=128)],
        expires_in: Annotated[str | None, Form(max_length=12)] = None,
        expiry_amount: Annotated[str | None, Form(max_length=12)] = None,
        expiry_unit: Annotated[str | None, Form(max_length=12)] = None,
        max_views: Annotated[str | None, Form(max_length=12)] = None,
        max_views_per_viewer: Annotated[str | None, Form(max_length=12)] = None,
        end_of_session: Annotated[str | None, Form(max_length=8)] = None,
        # No cap here: an over-long password gets password_too_long (with the limit).
        password: Annotated[str | None, Form()] = None,
        gallery_category: Annotated[str | None, Form(max_length=64)] = None,
        idempotency_key: Annotated[str | None, Form(max_length=256)] = None,
    ) -> Response:
        form = {"image_id": image_id, "owner_token": owner_token}
        fields = {
            "expires_in": expires_in,
            "expiry_amount": expiry_amount,
            "expiry_unit": expiry_unit,
            "max_views": max_views,
            "max_views_per_viewer": max_views_per_viewer,
            "end_of_session": end_of_session,
            # carried so "Try again" keeps the password (the uploader's own page)
            "password": password,
            "gallery_category": gallery_category,
        }
        try:
            key = request_key(idempotency_key)
            req = LinkRequest(
                image_id=image_id,
                owner_token=owner_token,
                expires_in=form_expiry(expires_in, expiry_amount, expiry_unit)
                or settings.default_expires_in_s,
                max_views=form_int(max_views, "max_views") or settings.default_max_views,
                max_views_per_viewer=form_int(max_views_per_viewer, "max_views_per_viewer"),
                end_of_session=form_bool(end_of_session),
                password=password or None,
                gallery_category=gallery_category or None,
            )
            created = await run_in_threadpool(new_link, req, key)
        except creation.AlreadyCreated as exc:
            # A reload of "Your link is ready" (or a second click): the first link stands,
            # and its owner controls stay reachable. "Make another" posts a fresh key.
            return pages.render(
                "already_created.html",
                exc.status,
                error=exc,
                link_id=exc.data["link_id"],
                req=form,
                fields=fields,
                fresh_key=new_token(),
            )
        except DomainError as exc:
            retry = exc.code == "not_scanned_yet"
            return pages.render(
                "create_error.html",
                exc.status,
                error=exc,
                req=form,
                retry=retry,
                # "Try again" keeps the key: no link was made with it yet
                fields={**fields, "idempotency_key": idempotency_key},
            )
        return pages.render(
            "created.html",
            201,
            link=created,
            url=share_url(created.token),
            session=session_info(created),
            gallery=gallery_info(created),
            owner_token=owner_token,
        )

    async def owner_call(action: str, fn: Callable[[], Any]) -> Any:
        try:
            result = await run_in_threadpool(fn)
        except DomainError as exc:
            metrics.OWNER_ACTIONS.labels(action, exc.code).inc()
            raise
        metrics.OWNER_ACTIONS.labels(action, "ok").inc()
        return result

    @app.post("/api/v1/owner/links")
    async def list_links(req: OwnerRequest) -> dict[str, Any]:
        p = service.ports
        found = await owner_call(
            "list",
            lambda: owner.list_links(
                images=p.images,
                links=p.links,
                salt=salt,
                image_id=req.image_id,
                owner_token=req.owner_token,
            ),
        )
        return {"image_id": req.image_id, "links": [asdict(s) for s in found]}

    async def revoke_link(link_id: str, key: str) -> None:
        p = service.ports
        await owner_call(
            "revoke",
            lambda: owner.revoke_link(
                images=p.images,
                links=p.links,
                tickets=p.tickets,
                salt=salt,
                link_id=link_id,
                owner_token=key,
            ),
        )

    async def delete_everywhere(image_id: str, key: str) -> None:
        p = service.ports
        await owner_call(
            "delete",
            lambda: owner.delete_image(
                images=p.images,
                links=p.links,
                tickets=p.tickets,
                salt=salt,
                image_id=image_id,
                owner_token=key,
            ),
        )

    @app.delete("/api/v1/links/{link_id}", status_code=204)
    async def revoke(
        link_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        await revoke_link(link_id, bearer(authorization))
        return Response(status_code=204)

    # Owner delete lives under /api/v1/owner, beside /api/v1/owner/links: behind one public
    # hostname /api/v1/images/{id} is ingest's (GET status), and an Ingress routes by path, not
    # by method. The old path stays for existing clients (same handler, marked deprecated).
    @app.delete("/api/v1/owner/images/{image_id}", status_code=204)
    @app.delete("/api/v1/images/{image_id}", status_code=204, deprecated=True)
    async def delete_image(
        image_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        await delete_everywhere(image_id, bearer(authorization))
        return Response(status_code=204)

    @app.post("/owner/revoke", response_class=HTMLResponse, include_in_schema=False)
    async def revoke_form(
        link_id: Annotated[str, Form(max_length=64)],
        owner_token: Annotated[str, Form(max_length=128)],
    ) -> Response:
        try:
            await revoke_link(link_id, owner_token)
        except DomainError as exc:
            return pages.render("owner_done.html", exc.status, error=exc)
        return pages.render("owner_done.html", 200, done="revoked")

    @app.post("/owner/delete", response_class=HTMLResponse, include_in_schema=False)
    async def delete_form(
        image_id: Annotated[str, Form(max_length=64)],
        owner_token: Annotated[str, Form(max_length=128)],
    ) -> Response:
        try:
            await delete_everywhere(image_id, owner_token)
        except DomainError as exc:
            return pages.render("owner_done.html", exc.status, error=exc)
        return pages.render("owner_done.html", 200, done="deleted")

    app.include_router(share_router(settings, pages, lambda: service.ports))
    app.include_router(session_router(settings, lambda: service.ports))

    def report_repos() -> tuple[ImageRepo, LinkRepo, ReportRepo, RateLimiter, JobRepo]:
        p = service.ports
        return p.images, p.links, p.reports, p.limiter, p.jobs

    app.include_router(report_router(settings, pages, report_repos))
    app.include_router(gallery_router(settings, pages, lambda: service.ports))
    app.include_router(appeal_router(settings, lambda: service.ports))
    return app
