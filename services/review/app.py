"""Review HTTP transport: the first-cut queue page and the hash-bank API.

Reports are filed on the public services (share pages) and land here. Reviewer login is not
built yet: this service binds to 127.0.0.1 only and must never be exposed (see README)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from pymongo.database import Database

from services.review import domain, metrics
from services.review.settings import ReviewSettings
from services.shared.errors import NotFound
from services.shared.mongo import Doc
from services.shared.pages import Pages
from services.shared.repos import BankRepo, ImageRepo, ReportRepo
from services.shared.service import Service, create_service_app
from services.shared.status import ImageStatus


@dataclass
class Ports:
    images: ImageRepo
    reports: ReportRepo
    banks: BankRepo


class BankEntryRequest(BaseModel):
    hash: str = Field(max_length=128)
    signal_type: str = Field(default="phash", max_length=32)
    reason: str = Field(min_length=1, max_length=500)
    source: str = Field(default="manual", max_length=200)


def open_ports(db: Database[Doc]) -> Ports:
    ports = Ports(ImageRepo(db), ReportRepo(db), BankRepo(db))
    ports.reports.ensure_indexes()
    ports.banks.ensure_indexes()
    return ports


def create_app(settings: ReviewSettings, ports: Ports | None = None) -> FastAPI:
    pages = Pages("services.review")
    service: Service[Ports] = Service()
    app = create_service_app(
        name="review", settings=settings, service=service, open_ports=open_ports, given=ports
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def queue() -> Response:
        p = service.ports
        open_reports = await run_in_threadpool(p.reports.open_reports)
        held = await run_in_threadpool(lambda: p.images.list_by_status(ImageStatus.REVIEW))
        return pages.render("queue.html", reports=open_reports, held=held)

    @app.post("/api/v1/banks/{bank}/entries", status_code=201)
    async def add_entry(bank: str, req: BankEntryRequest) -> dict[str, object]:
        p = service.ports
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
        taken_down: list[str] = []
        if req.signal_type == "phash":
            taken_down = await run_in_threadpool(
                lambda: domain.retroactive_takedown(
                    images=p.images,
                    bank=bank,
                    entry_id=entry_id,
                    hash_value=req.hash.strip().lower(),
                    max_distance=settings.hash_max_distance,
                )
            )
            metrics.TAKEDOWNS.inc(len(taken_down))
        return {"entry_id": entry_id, "bank": bank, "taken_down": taken_down}

    @app.get("/api/v1/banks/entries")
    async def list_entries() -> list[dict[str, object]]:
        p = service.ports
        docs = await run_in_threadpool(p.banks.entries)
        return [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in d.items()}
            for d in docs
        ]

    @app.delete("/api/v1/banks/entries/{entry_id}", status_code=204)
    async def remove_entry(entry_id: str) -> Response:
        p = service.ports
        if not await run_in_threadpool(p.banks.remove, entry_id):
            raise NotFound("No bank entry has this id.", code="entry_not_found")
        metrics.BANK_CHANGES.labels("removed").inc()
        return Response(status_code=204)

    return app
