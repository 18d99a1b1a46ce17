"""Ingest HTTP transport: decode the request, call the domain, map the result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pymongo.collection import Collection
from pymongo.database import Database

from services.ingest import metrics
from services.ingest.backlog import backlog_loop
from services.ingest.bodylimit import BodyLimit
from services.ingest.intake import IntakeLimits, SanitizedImage, accepted_formats, sanitize
from services.ingest.multipart import UPLOAD_SCHEMA, read_upload
from services.ingest.settings import IngestSettings
from services.ingest.slots import Slots
from services.ingest.uploads import Accepted, accept_upload, relay_pending
from services.shared import tracing
from services.shared.clients import parse_networks
from services.shared.errors import DomainError, NotFound, RateLimited, try_again_in
from services.shared.http import request_client_key
from services.shared.kafka import KafkaPublisher, Publisher, ensure_topics_best_effort
from services.shared.linkoptions import (
    EXPIRY_UNITS_S,
    MAX_VIEWS_CHOICES,
    PASSWORD_MAX_LENGTH,
    PER_VIEWER_CHOICES,
    expiry_menu,
    gallery_categories,
)
from services.shared.mongo import BlobStore, Doc
from services.shared.pages import Pages
from services.shared.ratelimit import RateLimiter
from services.shared.repos import ImageRepo
from services.shared.service import Service, create_service_app

log = logging.getLogger(__name__)
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
        max_frames=settings.max_frames,
        max_total_pixels=settings.max_total_pixels,
        max_long_edge=settings.max_long_edge,
        jpeg_quality=settings.jpeg_quality,
        webp_quality=settings.webp_quality,
    )


def ports_opener(settings: IngestSettings) -> Callable[[Database[Doc]], Ports]:
    def open_ports(db: Database[Doc]) -> Ports:
        ports = Ports(
            ImageRepo(db),
            BlobStore(db),
            KafkaPublisher(settings),
            upload_limiter(db["rate_limits"], settings),
        )
        ports.images.ensure_indexes()
        ports.limiter.ensure_indexes()
        ensure_topics_best_effort(settings)
        return ports

    return open_ports


def create_app(settings: IngestSettings, ports: Ports | None = None) -> FastAPI:
    """Build the app. With ``ports`` given (tests), no clients are opened."""
    limits = limits_from(settings)
    proxies = parse_networks(settings.trusted_proxies.split(","))
    pages = Pages("services.ingest")
    service: Service[Ports] = Service()
    relay_wake = asyncio.Event()
    # Decodes at once: each can hold hundreds of MB of pixels, and more than the cores run
    # no faster (the rest wait their turn; the body has been read already).
    decode_slots = Slots(settings.intake_concurrency)

    def body_limit(app: FastAPI) -> None:
        app.add_middleware(
            BodyLimit,
            cap=limits.max_bytes,
            slack=MULTIPART_OVERHEAD,
            paths=frozenset({"/api/v1/images", "/upload"}),
        )

    app = create_service_app(
        name="ingest",
        settings=settings,
        service=service,
        open_ports=ports_opener(settings),
        given=ports,
        background=lambda p: _background(settings, p, relay_wake),
        close_ports=lambda p: p.publisher.close(),
        inner_middleware=body_limit,
    )
    # Room pages upload photos here straight from the browser: that origin only, no cookies.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.rooms_public_url.rstrip("/")],
        allow_methods=["GET", "POST"],
        allow_credentials=False,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    async def take(request: Request) -> tuple[Accepted, SanitizedImage]:
        start = time.perf_counter()
        p = service.ports
        try:
            await run_in_threadpool(check_rate, p.limiter, request)
            upload = await read_upload(request, limits.max_bytes)
            image = await decode_slots.run(sanitize, upload.data, limits, upload.watermark)
        except DomainError as exc:
            metrics.UPLOADS.labels("refused", exc.code).inc()
            raise
        # The upload's trace id is its request id (X-Request-ID in, or made by the
        # middleware): it follows the image through Kafka to the scanner, links and rooms.
        trace_id = tracing.request_id.get() or tracing.new_id()
        accepted = await run_in_threadpool(
            lambda: accept_upload(
                image,
                images=p.images,
                blobs=p.blobs,
                salt=settings.salt(),
                trace_id=trace_id,
            )
        )
        relay_wake.set()  # announce it now, outside the request
        metrics.UPLOADS.labels("accepted", "").inc()
        metrics.BYTES_IN.inc(len(upload.data))
        metrics.BYTES_OUT.inc(len(image.data))
        metrics.PROCESSING.observe(time.perf_counter() - start)
        log.info("upload accepted", extra={"image_id": accepted.image_id, "trace_id": trace_id})
        return accepted, image

    def check_rate(limiter: RateLimiter, request: Request) -> None:
        allowance = limiter.hit(request_client_key(request, settings.salt(), proxies, "upload"))
        if not allowance.allowed:
            raise RateLimited(
                "Too many uploads from your connection. " + try_again_in(allowance.retry_after_s),
                retry_after_s=allowance.retry_after_s,
            )

    expiry_min, expiry_max = settings.min_expires_in_s, settings.max_expires_in_s
    choices: dict[str, Any] = {
        "max_views_choices": MAX_VIEWS_CHOICES,
        # A bad menu stops the service here, at start (ValueError naming the setting).
        "expiry_choices": expiry_menu(settings.link_expiry_choices_s, expiry_min, expiry_max),
        "expiry_min": expiry_min,
        "expiry_max": expiry_max,
        "gallery_categories": gallery_categories(settings.gallery_categories),
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
                "animated": image.animated,
                "frames": image.frames,
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
                "expires_in_s": list(choices["expiry_choices"]),
                # Any whole number of these units between the two bounds ("Custom…").
                "min_expires_in_s": expiry_min,
                "max_expires_in_s": expiry_max,
                "expiry_units_s": dict(EXPIRY_UNITS_S),
                "max_views": list(MAX_VIEWS_CHOICES),
                "max_views_per_viewer": list(PER_VIEWER_CHOICES),
                "end_of_session": True,
                "password_max_length": PASSWORD_MAX_LENGTH,
                "gallery_categories": list(choices["gallery_categories"]),
            },
        }

    @app.get("/api/v1/images/{image_id}")
    def status(image_id: str) -> dict[str, str]:
        doc: Doc | None = service.ports.images.get(image_id) if len(image_id) <= 64 else None
        if doc is None:
            raise NotFound("No image has this id.", code="image_not_found")
        return {"image_id": image_id, "status": str(doc["status"])}

    return app


async def _background(settings: IngestSettings, ports: Ports, wake: asyncio.Event) -> None:
    await asyncio.gather(
        _relay(settings, ports, wake), backlog_loop(ports.images, settings.backlog_refresh_s)
    )


async def _relay(settings: IngestSettings, ports: Ports, wake: asyncio.Event) -> None:
    """Outbox relay: woken by each upload, and every few seconds for retries and re-announces."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=settings.republish_interval_s)
        wake.clear()
        try:
            await run_in_threadpool(
                lambda: relay_pending(
                    images=ports.images,
                    publisher=ports.publisher,
                    older_than_s=settings.republish_after_s,
                    max_attempts=settings.max_publish_attempts,
                    retry_after_s=max(5.0, settings.republish_interval_s),
                )
            )
        except Exception:
            log.exception("outbox relay pass failed; will retry")
