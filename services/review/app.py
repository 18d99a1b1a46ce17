"""Review HTTP transport: public report intake, the first-cut queue page, hash-bank API.

Reviewer login is not built yet: the service binds to 127.0.0.1 only (see README)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, Form
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from services.review import domain, metrics
from services.review.settings import ReviewSettings
from services.shared.errors import DomainError, NotFound
from services.shared.http import install_error_handlers
from services.shared.metrics import instrument
from services.shared.mongo import database, make_client, ping
from services.shared.pages import Pages
from services.shared.repos import BankRepo, ImageRepo, LinkRepo, ReportRepo
from services.shared.status import ImageStatus


@dataclass
class Ports:
    images: ImageRepo
    links: LinkRepo
    reports: ReportRepo
    banks: BankRepo


class ReportRequest(BaseModel):
    reason: domain.ReportReason
    details: str = Field(default="", max_length=1000)
    image_id: str | None = Field(default=None, max_length=64)
    link_token: str | None = Field(default=None, max_length=128)


class BankEntryRequest(BaseModel):
    hash: str = Field(max_length=128)
    signal_type: str = Field(default="phash", max_length=32)
    reason: str = Field(min_length=1, max_length=500)
    source: str = Field(default="manual", max_length=200)


def create_app(settings: ReviewSettings, ports: Ports | None = None) -> FastAPI:
    pages = Pages("services.review")
    state: dict[str, Ports] = {}
    salt = settings.salt()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = None
        if ports is None:
            client = make_client(settings)
            db = database(client, settings)
            p = Ports(ImageRepo(db), LinkRepo(db), ReportRepo(db), BankRepo(db))
            await run_in_threadpool(p.reports.ensure_indexes)
            await run_in_threadpool(p.banks.ensure_indexes)
            state["ports"] = p
        else:
            state["ports"] = ports
        try:
            yield
        finally:
            if client is not None:
                client.close()

    app = FastAPI(title="ChatPic review", version="1", lifespan=lifespan)
    install_error_handlers(app)
    instrument(
        app,
        "review",
        lambda: {"database": "ports" in state and ping(state["ports"].images.col.database)},
    )

    def report(req: ReportRequest) -> str:
        p = state["ports"]
        report_id = domain.file_report(
            reports=p.reports,
            images=p.images,
            links=p.links,
            salt=salt,
            reason=req.reason,
            details=req.details,
            image_id=req.image_id,
            link_token=req.link_token,
        )
        metrics.REPORTS.labels(req.reason.value).inc()
        return report_id

    @app.post("/api/v1/reports", status_code=201)
    async def create_report(req: ReportRequest) -> dict[str, str]:
        if not req.image_id and not req.link_token:
            raise DomainError("Say which image: image_id or link_token.", code="missing_target")
        return {"report_id": await run_in_threadpool(report, req), "status": "open"}

    @app.post("/report", response_class=HTMLResponse, include_in_schema=False)
    async def report_form(
        link_token: Annotated[str, Form(max_length=128)],
        reason: Annotated[domain.ReportReason, Form()],
        details: Annotated[str, Form(max_length=1000)] = "",
    ) -> Response:
        req = ReportRequest(reason=reason, details=details, link_token=link_token)
        try:
            await run_in_threadpool(report, req)
        except DomainError as exc:
            return pages.render("message.html", exc.status, message=exc.message)
        return pages.render("message.html", 201, message="Thank you. A moderator will look at it.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def queue() -> Response:
        p = state["ports"]
        open_reports = await run_in_threadpool(p.reports.open_reports)
        held = await run_in_threadpool(lambda: p.images.list_by_status(ImageStatus.REVIEW))
        return pages.render("queue.html", reports=open_reports, held=held)

    @app.post("/api/v1/banks/{bank}/entries", status_code=201)
    async def add_entry(bank: str, req: BankEntryRequest) -> dict[str, str]:
        p = state["ports"]
        entry_id = await run_in_threadpool(
            lambda: domain.add_bank_entry(
                banks=p.banks,
                bank=bank,
                signal_type=req.signal_type,
                hash_value=req.hash,
                reason=req.reason,
                source=req.source,
            )
        )
        metrics.BANK_CHANGES.labels("added").inc()
        return {"entry_id": entry_id, "bank": bank}

    @app.get("/api/v1/banks/entries")
    async def list_entries() -> list[dict[str, object]]:
        p = state["ports"]
        docs = await run_in_threadpool(p.banks.entries)
        return [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in d.items()}
            for d in docs
        ]

    @app.delete("/api/v1/banks/entries/{entry_id}", status_code=204)
    async def remove_entry(entry_id: str) -> Response:
        p = state["ports"]
        if not await run_in_threadpool(p.banks.remove, entry_id):
            raise NotFound("No bank entry has this id.", code="entry_not_found")
        metrics.BANK_CHANGES.labels("removed").inc()
        return Response(status_code=204)

    return app
