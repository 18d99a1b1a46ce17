"""Public report intake, on the public service people already see images on. Reports land in
the review console's queue; the reporter is kept only as a salted hash, rate-limited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from services.links import metrics
from services.links.settings import LinksSettings
from services.shared.clients import parse_networks
from services.shared.errors import DomainError, RateLimited
from services.shared.http import request_client_key
from services.shared.jobrepo import JobRepo
from services.shared.linkrepo import LinkRepo
from services.shared.pages import Pages
from services.shared.ratelimit import RateLimiter
from services.shared.reports import MAX_DETAILS, ReportReason, file_report
from services.shared.repos import ImageRepo, ReportRepo


class ReportRequest(BaseModel):
    reason: ReportReason
    details: str = Field(default="", max_length=MAX_DETAILS)
    image_id: str | None = Field(default=None, max_length=64)
    link_token: str | None = Field(default=None, max_length=128)


Repos = Callable[[], tuple[ImageRepo, LinkRepo, ReportRepo, RateLimiter, JobRepo]]


def reporter_of(settings: LinksSettings) -> Callable[[Request], str]:
    """Who reports: a salted key of the reduced client address, never the address."""
    salt = settings.salt()
    proxies = parse_networks(settings.trusted_proxies.split(","))
    return lambda request: request_client_key(request, salt, proxies, "report")


def report_filer(settings: LinksSettings, repos: Repos) -> Callable[[ReportRequest, str], str]:
    """Files one report (rate-limited per reporter) into the review queue; blocking: run it in
    a thread. Share pages, the reports API and the gallery all file through it."""
    salt = settings.salt()

    def file(req: ReportRequest, reporter: str) -> str:
        images, links, reports, limiter, jobs = repos()
        allowance = limiter.hit(reporter)
        if not allowance.allowed:
            raise RateLimited(
                "Too many reports from your connection. Try again later.",
                retry_after_s=allowance.retry_after_s,
            )
        filed = file_report(
            reports=reports,
            images=images,
            links=links,
            salt=salt,
            reason=req.reason,
            details=req.details,
            reporter=reporter,
            image_id=req.image_id,
            link_token=req.link_token,
            jobs=jobs,
            auto_hide_reporters=settings.auto_hide_reporters,
        )
        metrics.REPORTS.labels(req.reason.value).inc()
        if filed.auto_hidden:
            metrics.AUTO_HIDES.inc()
        return filed.report_id

    return file


def report_router(settings: LinksSettings, pages: Pages, repos: Repos) -> APIRouter:
    router = APIRouter()
    file = report_filer(settings, repos)
    reporter = reporter_of(settings)

    @router.post("/api/v1/reports", status_code=201)
    async def create_report(req: ReportRequest, request: Request) -> dict[str, str]:
        report_id = await run_in_threadpool(file, req, reporter(request))
        return {"report_id": report_id, "status": "open"}

    @router.post("/s/{token}/report", response_class=HTMLResponse, include_in_schema=False)
    async def report_form(
        token: str,
        request: Request,
        reason: Annotated[ReportReason, Form()],
        details: Annotated[str, Form(max_length=MAX_DETAILS)] = "",
    ) -> Response:
        req = ReportRequest(reason=reason, details=details, link_token=token[:128])
        try:
            await run_in_threadpool(file, req, reporter(request))
        except DomainError as exc:
            return pages.render("gone.html", exc.status, exc.headers, error=exc)
        return pages.render("reported.html", 201)

    return router
