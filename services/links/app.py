"""Links HTTP transport: create links, share pages, reveals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, StrictInt
from pymongo.collection import Collection
from pymongo.database import Database

from services.links import domain, metrics
from services.links.report_routes import report_router
from services.links.settings import LinksSettings
from services.shared.errors import DomainError
from services.shared.http import wants_html
from services.shared.mongo import BlobStore, Doc
from services.shared.pages import Pages
from services.shared.ratelimit import RateLimiter
from services.shared.repos import ImageRepo, LinkRepo, ReportRepo
from services.shared.service import Service, create_service_app

IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Disposition": "inline",
}


@dataclass
class Ports:
    images: ImageRepo
    links: LinkRepo
    blobs: BlobStore
    reports: ReportRepo
    limiter: RateLimiter


class LinkRequest(BaseModel):
    image_id: str = Field(min_length=1, max_length=64)
    owner_token: str = Field(min_length=1, max_length=128)
    expires_in: StrictInt | None = Field(default=None, ge=1)
    max_views: StrictInt | None = Field(default=None, ge=1)


def report_limiter(col: Collection[Doc], settings: LinksSettings) -> RateLimiter:
    return RateLimiter(
        col, name="report", limit=settings.report_rate_limit, window_s=settings.report_rate_window_s
    )


def ports_opener(settings: LinksSettings) -> Callable[[Database[Doc]], Ports]:
    def open_ports(db: Database[Doc]) -> Ports:
        ports = Ports(
            ImageRepo(db),
            LinkRepo(db),
            BlobStore(db),
            ReportRepo(db),
            report_limiter(db["rate_limits"], settings),
        )
        ports.links.ensure_indexes()
        ports.limiter.ensure_indexes()
        return ports

    return open_ports


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
    )

    def new_link(req: LinkRequest) -> domain.CreatedLink:
        expires_in = req.expires_in or settings.default_expires_in_s
        max_views = req.max_views or settings.default_max_views
        if expires_in < settings.min_expires_in_s:
            raise DomainError(
                "The expiry is shorter than allowed.",
                code="expires_in_too_short",
                limit=settings.min_expires_in_s,
            )
        if expires_in > settings.max_expires_in_s:
            raise DomainError(
                "The expiry is longer than allowed.",
                code="expires_in_too_long",
                limit=settings.max_expires_in_s,
            )
        if max_views > settings.max_max_views:
            raise DomainError(
                "Too many views requested.", code="max_views_too_high", limit=settings.max_max_views
            )
        p = service.ports
        try:
            created = domain.create_link(
                images=p.images,
                links=p.links,
                salt=salt,
                image_id=req.image_id,
                owner_token=req.owner_token,
                expires_in_s=expires_in,
                max_views=max_views,
            )
        except DomainError as exc:
            metrics.LINK_REFUSED.labels(exc.code).inc()
            raise
        metrics.LINKS_CREATED.inc()
        return created

    def share_url(token: str) -> str:
        return f"{settings.links_public_url.rstrip('/')}/s/{token}"

    @app.post("/api/v1/links", status_code=201)
    async def create(req: LinkRequest) -> dict[str, object]:
        created = await run_in_threadpool(new_link, req)
        return {
            "link_id": created.link_id,
            "token": created.token,
            "url": share_url(created.token),
            "image_id": created.image_id,
            "expires_at": created.expires_at.isoformat(),
            "max_views": created.max_views,
        }

    @app.post("/links/new", response_class=HTMLResponse, include_in_schema=False)
    async def create_form(
        image_id: Annotated[str, Form(max_length=64)],
        owner_token: Annotated[str, Form(max_length=128)],
        expires_in: Annotated[int, Form(ge=1)] = 3600,
        max_views: Annotated[int, Form(ge=1)] = 1,
    ) -> Response:
        req = LinkRequest(
            image_id=image_id, owner_token=owner_token, expires_in=expires_in, max_views=max_views
        )
        try:
            created = await run_in_threadpool(new_link, req)
        except DomainError as exc:
            return pages.render(
                "create_error.html",
                exc.status,
                error=exc,
                req=req,
                retry=exc.code == "not_scanned_yet",
            )
        return pages.render("created.html", 201, link=created, url=share_url(created.token))

    @app.api_route(
        "/s/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    async def share_page(token: str) -> Response:
        p = service.ports
        try:
            view = await run_in_threadpool(
                lambda: domain.describe(images=p.images, links=p.links, salt=salt, token=token)
            )
        except DomainError as exc:
            # An ended link can still be reported: a one-view link is used up by the very
            # viewing that shows the recipient what they may need to report.
            reportable = exc.code in ("used_up", "expired", "revoked", "removed")
            return pages.render(
                "gone.html", exc.status, error=exc, token=token if reportable else None
            )
        return pages.render(
            "share.html",
            view=view,
            token=token,
        )

    @app.post("/s/{token}/reveal")
    async def reveal(token: str, request: Request) -> Response:
        p = service.ports
        try:
            served = await run_in_threadpool(
                lambda: domain.reveal(
                    images=p.images, links=p.links, blobs=p.blobs, salt=salt, token=token
                )
            )
        except DomainError as exc:
            metrics.REVEALS.labels(exc.code).inc()
            if wants_html(request):  # browsers get the page, API clients the JSON error
                return pages.render("gone.html", exc.status, error=exc)
            raise
        metrics.REVEALS.labels("granted").inc()
        metrics.BYTES_SERVED.inc(len(served.data))
        headers = {**IMAGE_HEADERS, "X-Views-Left": str(served.views_left)}
        return Response(served.data, media_type=served.content_type, headers=headers)

    def report_repos() -> tuple[ImageRepo, LinkRepo, ReportRepo, RateLimiter]:
        p = service.ports
        return p.images, p.links, p.reports, p.limiter

    app.include_router(report_router(settings, pages, report_repos))
    return app
