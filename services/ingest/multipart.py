"""Reading an upload: multipart parsed with tight limits, the file read with a byte cap.
The client's file name is never used for anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from services.ingest.bodylimit import too_large
from services.shared.errors import IntakeError

CHUNK = 256 * 1024
MAX_FIELDS = 20
MAX_FIELD_BYTES = 16 * 1024


async def _read_capped(upload: StarletteUpload, cap: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > cap:
            raise too_large(cap)
        parts.append(chunk)
    return b"".join(parts)


@dataclass(frozen=True)
class Upload:
    data: bytes
    watermark: str | None  # optional text to draw on the served image


async def read_upload(request: Request, cap: int) -> Upload:
    """Parse the multipart body with tight limits; the client's file name is never used.
    A client that goes away mid-upload (a cancel, a lost phone signal) is a 4xx, not an error."""
    try:
        return await _read_upload(request, cap)
    except ClientDisconnect as exc:
        raise IntakeError(
            "The upload was interrupted before it finished.",
            code="upload_interrupted",
            status=400,
        ) from exc


async def _read_upload(request: Request, cap: int) -> Upload:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise IntakeError(
            "Send the image as multipart/form-data with a field named 'file'.",
            code="not_multipart",
            status=415,
        )
    try:
        form = await request.form(max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except (MultiPartException, HTTPException) as exc:
        # Starlette reports multipart defects as an HTTPException(400) inside an app.
        reason = exc.message if isinstance(exc, MultiPartException) else exc.detail
        raise IntakeError(
            f"The upload form could not be read ({reason}).",
            code="malformed_upload",
            status=400,
        ) from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, StarletteUpload):
            raise IntakeError(
                "Send the image as a multipart form field named 'file'.",
                code="missing_file",
                status=400,
            )
        watermark = form.get("watermark")
        if watermark is not None and not isinstance(watermark, str):
            raise IntakeError("The watermark must be text.", code="invalid_watermark", status=400)
        return Upload(await _read_capped(upload, cap), watermark.strip() if watermark else None)
    finally:
        await form.close()


UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "watermark": {"type": "string", "maxLength": 40},
                    },
                }
            }
        },
    }
}
