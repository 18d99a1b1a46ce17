"""Hash-bank API: entries, per-bank settings, CSV import/export. Adding an entry applies it
retroactively to live images and tells every scanner."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from services.review import banning, domain
from services.review.auth import Reviewer, require_admin
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared.errors import DomainError

Admin = Annotated[Reviewer, Depends(require_admin)]  # the audit's actor


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


def bank_router(settings: ReviewSettings, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/banks/{bank}/entries", status_code=201)
    async def add_entry(me: Admin, bank: str, req: BankEntryRequest) -> dict[str, object]:
        p = ports()
        added = await run_in_threadpool(
            lambda: banning.add_entry(
                p,
                settings,
                bank=bank,
                signal_type=req.signal_type,
                hash_value=req.hash,
                reason=req.reason,
                source=req.source,
                actor=me.username,
            )
        )
        return added.to_dict()

    @router.get("/api/v1/banks/entries")
    async def list_entries() -> list[dict[str, object]]:
        p = ports()
        docs = await run_in_threadpool(p.banks.entries)
        return [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in d.items()}
            for d in docs
        ]

    @router.delete("/api/v1/banks/entries/{entry_id}", status_code=204)
    async def remove_entry(me: Admin, entry_id: str) -> Response:
        p = ports()
        await run_in_threadpool(lambda: banning.remove_entry(p, entry_id, actor=me.username))
        return Response(status_code=204)

    @router.get("/api/v1/banks/{bank}")
    async def get_bank(bank: str) -> dict[str, object]:
        """Settings in force for the bank (defaults where nothing is stored) and entry counts."""
        p = ports()
        found = await run_in_threadpool(lambda: domain.get_bank_settings(banks=p.banks, bank=bank))
        counts = await run_in_threadpool(p.banks.counts, bank, list(domain.SIGNALS))
        return {**found.to_dict(), "entries": counts}

    @router.put("/api/v1/banks/{bank}")
    async def put_bank(me: Admin, bank: str, req: BankSettingsRequest) -> dict[str, object]:
        p = ports()
        updated = await run_in_threadpool(
            lambda: banning.update_settings(
                p,
                bank=bank,
                thresholds=req.thresholds,
                pdq_min_quality=req.pdq_min_quality,
                actor=me.username,
            )
        )
        return updated.to_dict()

    @router.get("/api/v1/banks/{bank}/export.csv")
    async def export_bank(bank: str) -> Response:
        """``signal_type,hash,bank,reason`` rows, oldest first. A reason that a spreadsheet
        would take for a formula (starting ``= + - @``) is written with a leading ``'``; the
        import reads it back without, so an exported file re-imports unchanged."""
        p = ports()
        text = await run_in_threadpool(lambda: domain.export_bank_csv(banks=p.banks, bank=bank))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{bank}.csv"'},
        )

    @router.post("/api/v1/banks/{bank}/import", openapi_extra=IMPORT_SCHEMA)
    async def import_bank(
        me: Admin, request: Request, bank: str, source: str = "csv-import"
    ) -> dict[str, object]:
        """CSV body (``text/csv``) or multipart field ``file``; all rows or none. A reason
        written ``'=…`` (as the export disarms formulas) is stored as ``=…``."""
        domain.check_bank(bank)
        data = await read_import_body(request)
        p = ports()
        result = await run_in_threadpool(
            lambda: banning.import_csv(p, bank=bank, data=data, source=source, actor=me.username)
        )
        return result.to_dict()

    return router
