"""Ingest HTTP transport: decode the request, call the domain, map the result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pymongo.collection import Collection
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from services.ingest import metrics
from services.ingest.bodylimit import BodyLimit, too_large
from services.ingest.intake import IntakeLimits, SanitizedImage, accepted_formats, sanitize
from services.ingest.settings import IngestSettings
from services.ingest.uploads import Accepted, accept_upload, republish_due
from services.shared.clients import client_address, client_key, parse_networks
from services.shared.errors import DomainError, IntakeError, NotFound, RateLimited
from services.shared.http import install_error_handlers
from services.shared.kafka import KafkaPublisher, Publisher, ensure_topics_best_effort
from services.shared.linkoptions import EXPIRY_CHOICES_S, MAX_VIEWS_CHOICES
from services.shared.metrics import instrument
from services.shared.mongo import BlobStore, Doc, MongoProbe, database, make_client
from services.shared.pages import Pages
from services.shared.ratelimit import RateLimiter
from services.shared.repos import ImageRepo

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
MAX_FIELDS = 20
MAX_FIELD_BYTES = 16 * 1024
MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class Ports:
    images: ImageRepo
    blobs: BlobStore
    publisher: Publisher
    limiter: RateLimiter


def upload_limiter(col: Collection[Doc], settings: IngestSettings) -> RateLimiter:
    return RateLimiter(
        col,
        name="upload",
        limit=settings.upload_rate_limit,
        window_s=settings.upload_rate_window_s,
    )


def limits_from(settings: IngestSettings) -> IntakeLimits:
    return IntakeLimits(
        max_bytes=settings.max_upload_bytes,
        max_width=settings.max_width,
        max_height=settings.max_height,
        max_pixels=settings.max_pixels,
        max_long_edge=settings.max_long_edge,
        jpeg_quality=settings.jpeg_quality,
    )


async def _read_capped(upload: StarletteUpload, cap: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > cap:
            raise too_large(cap)
        parts.append(chunk)
    return b"".join(parts)


async def read_upload(request: Request, cap: int) -> bytes:
    """Parse the multipart body with tight limits; the client's file name is never used."""
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
        return await _read_capped(upload, cap)
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
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def create_app(settings: IngestSettings, ports: Ports | None = None) -> FastAPI:
    """Build the app. With ``ports`` given (tests), no clients are opened."""
    limits = limits_from(settings)
    proxies = parse_networks(settings.trusted_proxies.split(","))
    pages = Pages("services.ingest")
    state: dict[str, Ports] = {}

    probes: list[MongoProbe] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = None
        probes.append(MongoProbe(settings))
        if ports is None:
            client = make_client(settings)
            db = database(client, settings)
            images = ImageRepo(db)
            await run_in_threadpool(images.ensure_indexes)
            await run_in_threadpool(ensure_topics_best_effort, settings)
            limiter = upload_limiter(db["rate_limits"], settings)
            await run_in_threadpool(limiter.ensure_indexes)
            state["ports"] = Ports(images, BlobStore(db), KafkaPublisher(settings), limiter)
        else:
            state["ports"] = ports
        task = asyncio.create_task(_republisher(settings, state["ports"]))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state["ports"].publisher.close()
            probes.pop().close()
            if client is not None:
                client.close()

    app = FastAPI(title="ChatPic ingest", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        cap=limits.max_bytes,
        slack=MULTIPART_OVERHEAD,
        paths=frozenset({"/api/v1/images", "/upload"}),
    )

    def ready() -> dict[str, bool]:
        return {"database": bool(probes) and probes[0]()}

    instrument(app, "ingest", ready)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    async def take(request: Request) -> tuple[Accepted, SanitizedImage]:
        start = time.perf_counter()
        p = state["ports"]
        try:
            await run_in_threadpool(check_rate, p.limiter, request)
            data = await read_upload(request, limits.max_bytes)
            image = await run_in_threadpool(sanitize, data, limits)
        except DomainError as exc:
            metrics.UPLOADS.labels("refused", exc.code).inc()
            raise
        trace_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        accepted = await run_in_threadpool(
            lambda: accept_upload(
                image,
                images=p.images,
                blobs=p.blobs,
                publisher=p.publisher,
                salt=settings.salt(),
                trace_id=trace_id[:64],
            )
        )
        metrics.UPLOADS.labels("accepted", "").inc()
        metrics.BYTES_IN.inc(len(data))
        metrics.BYTES_OUT.inc(len(image.data))
        metrics.PROCESSING.observe(time.perf_counter() - start)
        log.info("upload accepted", extra={"image_id": accepted.image_id, "trace_id": trace_id})
        return accepted, image

    def check_rate(limiter: RateLimiter, request: Request) -> None:
        peer = request.client.host if request.client else None
        address = client_address(peer, request.headers.get("x-forwarded-for"), proxies)
        allowance = limiter.hit(client_key(settings.salt(), address, "upload"))
        if not allowance.allowed:
            raise RateLimited(
                "Too many uploads from your connection. Try again later.",
                retry_after_s=allowance.retry_after_s,
            )

    choices: dict[str, Any] = {
        "max_views_choices": MAX_VIEWS_CHOICES,
        "expiry_choices": EXPIRY_CHOICES_S,
    }
    links_url = settings.links_public_url.rstrip("/")

    @app.api_route(
        "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    def index() -> Response:
        return pages.render(
            "index.html", max_mb=limits.max_bytes // (1024 * 1024), links_url=links_url, **choices
        )

    @app.post("/api/v1/images", status_code=202, openapi_extra=UPLOAD_SCHEMA)
    async def upload(request: Request) -> JSONResponse:
        accepted, image = await take(request)
        return JSONResponse(
            {
                "image_id": accepted.image_id,
                "status": "pending",
                "status_url": f"/api/v1/images/{accepted.image_id}",
                "owner_token": accepted.owner_token,
                "content_type": image.content_type,
                "width": image.width,
                "height": image.height,
            },
            status_code=202,
            headers={"Cache-Control": "no-store"},
        )

    @app.post("/upload", response_class=HTMLResponse, include_in_schema=False)
    async def upload_form(request: Request) -> Response:
        try:
            accepted, _ = await take(request)
        except DomainError as exc:
            return pages.render(
                "error.html", exc.status, exc.headers, message=exc.message, code=exc.code
            )
        return pages.render(
            "uploaded.html",
            202,
            image_id=accepted.image_id,
            owner_token=accepted.owner_token,
            links_url=links_url,
            **choices,
        )

    @app.get("/api/v1/limits")
    def get_limits() -> dict[str, Any]:
        """Every limit an uploader can run into, so clients can check before sending."""
        return {
            **asdict(limits),
            "accepted_types": sorted(accepted_formats()),
            "upload_rate": {
                "uploads": settings.upload_rate_limit,
                "window_s": settings.upload_rate_window_s,
            },
            "link_options": {
                "expires_in_s": list(EXPIRY_CHOICES_S),
                "max_views": list(MAX_VIEWS_CHOICES),
            },
        }

    @app.get("/api/v1/images/{image_id}")
    def status(image_id: str) -> dict[str, str]:
        doc: Doc | None = state["ports"].images.get(image_id) if len(image_id) <= 64 else None
        if doc is None:
            raise NotFound("No image has this id.", code="image_not_found")
        return {"image_id": image_id, "status": str(doc["status"])}

    return app


async def _republisher(settings: IngestSettings, ports: Ports) -> None:
    """Outbox loop: anything still pending whose record may be lost is published again."""
    while True:
        await asyncio.sleep(settings.republish_interval_s)
        try:
            await run_in_threadpool(
                lambda: republish_due(
                    images=ports.images,
                    publisher=ports.publisher,
                    older_than_s=settings.republish_after_s,
                    max_attempts=settings.max_publish_attempts,
                )
            )
        except Exception:
            log.exception("re-publisher pass failed; will retry")
