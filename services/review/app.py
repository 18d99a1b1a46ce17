"""Review HTTP transport: the first-cut queue page and the hash-bank API.

Reports are filed on the public services (share pages) and land here. Reviewer login is not
built yet: this service binds to 127.0.0.1 only and must never be exposed (see README)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pymongo.database import Database
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from services.review import announce, domain, metrics
from services.review.evidence import purge_expired, read_evidence
from services.review.settings import ReviewSettings
from services.shared.errors import DomainError, NotFound
from services.shared.kafka import KafkaPublisher, Publisher
from services.shared.mongo import BlobStore, Doc
from services.shared.pages import Pages
from services.shared.repos import AuditRepo, BankRepo, ImageRepo, ReportRepo
from services.shared.service import Service, create_service_app
from services.shared.status import ImageStatus


@dataclass
class Ports:
    images: ImageRepo
    reports: ReportRepo
    banks: BankRepo
    vault: BlobStore
    audit: AuditRepo
    publisher: Publisher


class BankEntryRequest(BaseModel):
    hash: str = Field(max_length=128)
    signal_type: str = Field(default="phash", max_length=32)
    reason: str = Field(min_length=1, max_length=500)
    source: str = Field(default="manual", max_length=200)


class BankSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, StrictInt] | None = None  # signal type -> bits (inclusive)
    pdq_min_quality: StrictInt | None = None


IMPORT_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}
_MULTIPART_OVERHEAD = 64 * 1024


async def read_import_body(request: Request) -> bytes:
    """The CSV bytes of an import: the raw body, or the multipart field ``file``; capped."""
    cap = domain.IMPORT_MAX_BYTES
    too_large = DomainError(f"A CSV import is at most {cap} bytes.", code="too_large", status=413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap + _MULTIPART_OVERHEAD:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > cap + _MULTIPART_OVERHEAD:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise DomainError("The import was interrupted.", code="upload_interrupted") from exc
    body = b"".join(chunks)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        if len(body) > cap:
            raise too_large
        return body

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, replay(), max_files=1, max_fields=5).parse()
    except MultiPartException as exc:
        raise DomainError(
            f"The import form could not be read ({exc.message}).", code="malformed_upload"
        ) from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, StarletteUpload):
            raise DomainError(
                "Send the CSV as the body or as a multipart field named 'file'.",
                code="missing_file",
            )
        data = await upload.read(cap + 1)
        if len(data) > cap:
            raise too_large
        return data
    finally:
        await form.close()


def ports_opener(settings: ReviewSettings) -> Callable[[Database[Doc]], Ports]:
    def open_ports(db: Database[Doc]) -> Ports:
        ports = Ports(
            ImageRepo(db),
            ReportRepo(db),
            BankRepo(db),
            BlobStore(db, "evidence"),
            AuditRepo(db),
            KafkaPublisher(settings),
        )
        ports.reports.ensure_indexes()
        ports.banks.ensure_indexes()
        return ports

    return open_ports


def create_app(settings: ReviewSettings, ports: Ports | None = None) -> FastAPI:
    pages = Pages("services.review")
    service: Service[Ports] = Service()
    app = create_service_app(
        name="review",
        settings=settings,
        service=service,
        open_ports=ports_opener(settings),
        given=ports,
        background=lambda p: _evidence_sweeper(settings, p),
        close_ports=lambda p: p.publisher.close(),
    )

    async def changed(action: str, bank: str, entries: int) -> None:
        metrics.BANK_CHANGES.labels(action).inc(entries or 1)
        publisher = service.ports.publisher
        await run_in_threadpool(announce.bank_changed, publisher, bank, action, entries)

    @app.get("/api/v1/evidence/{image_id}")
    async def get_evidence(image_id: str, reason: str = "") -> Response:
        """Admin-only (loopback console): a blocked image's bytes, with the reason audited."""
        p = service.ports
        evidence = await run_in_threadpool(
            lambda: read_evidence(
                images=p.images, vault=p.vault, audit=p.audit, image_id=image_id, reason=reason
            )
        )
        return Response(evidence.data, media_type=evidence.content_type, headers=EVIDENCE_HEADERS)

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
        await changed("added", bank, 1)
        # The bank's own threshold for this signal type (pHash falls back to the service's).
        current = await run_in_threadpool(
            lambda: domain.get_bank_settings(banks=p.banks, bank=bank)
        )
        taken_down = await run_in_threadpool(
            lambda: domain.retroactive_takedown(
                images=p.images,
                bank=bank,
                entry_id=entry_id,
                hash_value=req.hash.strip().lower(),
                max_distance=current.thresholds.get(req.signal_type, settings.hash_max_distance),
                signal_type=req.signal_type,
            )
        )
        metrics.TAKEDOWNS.inc(len(taken_down))
        reason = f"hash_match:{bank}"
        await run_in_threadpool(announce.taken_down, p.publisher, taken_down, reason)
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
        await changed("removed", "", 1)
        return Response(status_code=204)

    @app.get("/api/v1/banks/{bank}")
    async def get_bank(bank: str) -> dict[str, object]:
        """Settings in force for the bank (defaults where nothing is stored) and entry counts."""
        p = service.ports
        found = await run_in_threadpool(lambda: domain.get_bank_settings(banks=p.banks, bank=bank))
        counts = await run_in_threadpool(p.banks.counts, bank, list(domain.SIGNALS))
        return {**found.to_dict(), "entries": counts}

    @app.put("/api/v1/banks/{bank}")
    async def put_bank(bank: str, req: BankSettingsRequest) -> dict[str, object]:
        p = service.ports
        updated = await run_in_threadpool(
            lambda: domain.update_bank_settings(
                banks=p.banks,
                bank=bank,
                thresholds=req.thresholds,
                pdq_min_quality=req.pdq_min_quality,
            )
        )
        await changed("settings", bank, 0)
        return updated.to_dict()

    @app.get("/api/v1/banks/{bank}/export.csv")
    async def export_bank(bank: str) -> Response:
        p = service.ports
        text = await run_in_threadpool(lambda: domain.export_bank_csv(banks=p.banks, bank=bank))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{bank}.csv"'},
        )

    @app.post("/api/v1/banks/{bank}/import", openapi_extra=IMPORT_SCHEMA)
    async def import_bank(
        request: Request, bank: str, source: str = "csv-import"
    ) -> dict[str, object]:
        """CSV body (``text/csv``) or multipart field ``file``; all rows or none."""
        domain.check_bank(bank)
        data = await read_import_body(request)
        p = service.ports
        result = await run_in_threadpool(
            lambda: domain.import_bank_csv(banks=p.banks, bank=bank, data=data, source=source)
        )
        await changed("imported", bank, result.imported)
        return result.to_dict()

    return app


log = logging.getLogger(__name__)

EVIDENCE_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


async def _evidence_sweeper(settings: ReviewSettings, ports: Ports) -> None:
    """Purge evidence past its retention, every few minutes."""
    while True:
        try:
            await run_in_threadpool(
                lambda: purge_expired(images=ports.images, vault=ports.vault, audit=ports.audit)
            )
        except Exception:
            log.exception("evidence sweep failed; will retry")
        await asyncio.sleep(settings.evidence_sweep_interval_s)
