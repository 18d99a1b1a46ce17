"""The public gallery's HTTP side: listing pages and API, thumbnails, and reports from cards.

A card opens ``/g/{public_id}`` (share_routes: the same page and reveal as a share link). The
listing shows only live links of cleared images (gallery.py); thumbnails are served under the
same checks, never to link expanders or prefetches, and count no views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from services.links import gallery, metrics
from services.links.ports import Ports
from services.links.report_routes import ReportRequest, report_filer, reporter_of
from services.links.settings import LinksSettings
from services.links.share_routes import Automated
from services.links.visitors import is_automated
from services.shared.errors import DomainError
from services.shared.imageserve import image_response
from services.shared.jobrepo import JobRepo
from services.shared.linkoptions import gallery_categories
from services.shared.linkrepo import LinkRepo
from services.shared.pages import Pages
from services.shared.ratelimit import RateLimiter
from services.shared.reports import MAX_DETAILS, ReportReason
from services.shared.repos import ImageRepo, ReportRepo, now

THUMB_MAX_AGE_S = 60


class GalleryReport(BaseModel):
    reason: ReportReason
    details: str = Field(default="", max_length=MAX_DETAILS)


def gallery_router(settings: LinksSettings, pages: Pages, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()
    categories = gallery_categories(settings.gallery_categories)
    reporter = reporter_of(settings)

    def repos() -> tuple[ImageRepo, LinkRepo, ReportRepo, RateLimiter, JobRepo]:
        p = ports()
        return p.images, p.links, p.reports, p.limiter, p.jobs

    file = report_filer(settings, repos)

    def unknown(category: str, status: int) -> DomainError:
        return DomainError(
            "There is no such gallery category.",
            code="unknown_category",
            status=status,
            categories=list(categories),
        )

    async def page(category: str | None, before: str | None) -> gallery.GalleryPage:
        cursor = gallery.parse_cursor(before)
        p = ports()
        return await run_in_threadpool(
            lambda: gallery.list_page(
                images=p.images, links=p.links, category=category, before=cursor, at=now()
            )
        )

    async def html_page(category: str | None, before: str | None) -> Response:
        try:
            if category is not None and category not in categories:
                raise unknown(category, 404)
            found = await page(category, before)
        except DomainError as exc:
            return pages.render("gone.html", exc.status, exc.headers, error=exc)
        metrics.GALLERY_PAGES.labels("html", "all" if category is None else "category").inc()
        older = f"?{urlencode({'before': found.older})}" if found.older else None
        return pages.render(
            "gallery.html",
            page=found,
            category=category,
            categories=categories,
            older=older,
            first=not before,
        )

    @router.get("/gallery", response_class=HTMLResponse, include_in_schema=False)
    async def gallery_all(before: str | None = None) -> Response:
        return await html_page(None, before)

    @router.get("/gallery/{category}", response_class=HTMLResponse, include_in_schema=False)
    async def gallery_category(category: str, before: str | None = None) -> Response:
        return await html_page(category, before)

    @router.get("/api/v1/gallery")
    async def gallery_api(category: str | None = None, before: str | None = None) -> Any:
        """Public images, newest first, 24 a page; ``older`` is the next page's ``before``."""
        chosen = (category or "").strip().lower() or None
        if chosen is not None and chosen not in categories:
            raise unknown(chosen, 400)
        found = await page(chosen, before)
        metrics.GALLERY_PAGES.labels("api", "all" if chosen is None else "category").inc()
        query = {"category": chosen or "", "before": found.older or ""}
        entries = [
            {
                **asdict(c),
                "listed_at": c.listed_at.isoformat(),
                "expires_at": c.expires_at.isoformat(),
                "url": f"/g/{c.public_id}",
                "thumbnail_url": f"/gallery/thumbs/{c.public_id}",
                "report_url": f"/api/v1/gallery/{c.public_id}/reports",
            }
            for c in found.cards
        ]
        return {
            "category": chosen,
            "categories": list(categories),
            "entries": entries,
            "older": found.older,
            "older_url": f"/api/v1/gallery?{urlencode(query)}" if found.older else None,
        }

    @router.get("/gallery/thumbs/{public_id}")
    async def thumbnail(public_id: str, request: Request) -> Response:
        p = ports()
        try:
            if is_automated(request.headers.get("user-agent"), request.headers):
                metrics.AUTOMATED.labels("gallery_thumb").inc()
                raise Automated("Previews and prefetches do not get photos. Open the gallery.")
            served = await run_in_threadpool(
                lambda: gallery.thumbnail(
                    images=p.images, links=p.links, blobs=p.blobs, salt=salt, public_id=public_id
                )
            )
        except DomainError as exc:
            metrics.GALLERY_THUMBNAILS.labels(exc.code).inc()
            raise
        metrics.GALLERY_THUMBNAILS.labels("served").inc()
        return image_response(served.data, served.content_type, max_age_s=THUMB_MAX_AGE_S)

    def file_for_entry(public_id: str, report: GalleryReport, who: str) -> str:
        """The entry's image gets the report (rate-limited per reporter, as every report)."""
        image_id = gallery.entry_image_id(ports().links, public_id)
        req = ReportRequest(reason=report.reason, details=report.details, image_id=image_id)
        report_id = file(req, who)
        metrics.GALLERY_REPORTS.labels(report.reason.value).inc()
        return report_id

    @router.post("/api/v1/gallery/{public_id}/reports", status_code=201)
    async def report_api(public_id: str, report: GalleryReport, request: Request) -> dict[str, str]:
        report_id = await run_in_threadpool(file_for_entry, public_id, report, reporter(request))
        return {"report_id": report_id, "status": "open"}

    @router.post(
        "/gallery/{public_id}/report", response_class=HTMLResponse, include_in_schema=False
    )
    async def report_form(
        public_id: str,
        request: Request,
        reason: Annotated[ReportReason, Form()],
        details: Annotated[str, Form(max_length=MAX_DETAILS)] = "",
    ) -> Response:
        report = GalleryReport(reason=reason, details=details)
        try:
            await run_in_threadpool(file_for_entry, public_id, report, reporter(request))
        except DomainError as exc:
            return pages.render("gone.html", exc.status, exc.headers, error=exc)
        return pages.render("reported.html", 201)

    return router
