"""Review HTTP transport: the console's pages and API, every one behind a reviewer login
(``services.review.auth``): the queue for reviewers; banks, the evidence vault, audit and
accounts for admins. Reports are filed on the public services (share pages) and land here."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pymongo.database import Database

from services.review import favicon as favicon_ico
from services.review.accounts import AuthPolicy
from services.review.admin_routes import admin_router
from services.review.auth import (
    AuthContext,
    Reviewer,
    bootstrap_admin_from_settings,
    install_auth,
    require_admin,
    require_reviewer,
)
from services.review.auth_routes import auth_router
from services.review.bank_routes import bank_router
from services.review.evidence import purge_expired, purge_removed, read_evidence
from services.review.intake import intake_loop
from services.review.ports import Ports, ports_opener
from services.review.queue_routes import queue_router
from services.review.room_routes import room_router
from services.review.settings import ReviewSettings
from services.shared.imageserve import image_response
from services.shared.mongo import Doc
from services.shared.pages import Pages
from services.shared.service import Service, create_service_app

Me = Annotated[Reviewer, Depends(require_reviewer)]
Admin = Annotated[Reviewer, Depends(require_admin)]


def create_app(settings: ReviewSettings, ports: Ports | None = None) -> FastAPI:
    pages = Pages("services.review")
    service: Service[Ports] = Service()
    auth = AuthContext(settings, AuthPolicy.from_settings(settings), lambda: service.ports.accounts)
    opener = ports_opener(settings)

    def open_ports(db: Database[Doc]) -> Ports:
        opened = opener(db)
        bootstrap_admin_from_settings(settings, opened.accounts)
        return opened

    app = create_service_app(
        name="review",
        settings=settings,
        service=service,
        open_ports=open_ports,
        given=ports,
        background=lambda p: _background(settings, p),
        close_ports=lambda p: p.publisher.close(),
        inner_middleware=lambda a: install_auth(a, auth),
        public_docs=False,
    )

    @app.get("/api/v1/evidence/{image_id}")
    async def get_evidence(me: Admin, image_id: str, reason: str = "") -> Response:
        """Admins only: a blocked image's bytes, with the reason and the admin audited."""
        p = service.ports
        evidence = await run_in_threadpool(
            lambda: read_evidence(
                images=p.images,
                vault=p.vault,
                audit=p.audit,
                image_id=image_id,
                reason=reason,
                actor=me.username,
            )
        )
        return image_response(evidence.data, evidence.content_type)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        """Public (``PUBLIC_PATHS``): the console's icon, so no page logs a 404 for it."""
        return Response(
            favicon_ico.ICON,
            media_type=favicon_ico.CONTENT_TYPE,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(me: Me) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(me: Me) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ChatPic review API")

    app.include_router(auth_router(pages, lambda: service.ports.accounts))
    # Banks (and their CSV exchange) are for admins only.
    app.include_router(
        bank_router(settings, lambda: service.ports), dependencies=[Depends(require_admin)]
    )
    app.include_router(admin_router(settings, lambda: service.ports, pages))
    app.include_router(queue_router(settings, lambda: service.ports, pages))
    app.include_router(room_router(lambda: service.ports, pages))
    return app


log = logging.getLogger(__name__)


async def _background(settings: ReviewSettings, ports: Ports) -> None:
    """The evidence sweeper and the job intake (held images → scanner jobs, queue gauges)."""
    await asyncio.gather(_evidence_sweeper(settings, ports), intake_loop(settings, ports))


async def _evidence_sweeper(settings: ReviewSettings, ports: Ports) -> None:
    """Purge evidence past its retention, and the bytes of removed images past the appeal
    window (``CHATPIC_REMOVED_RETENTION_DAYS``), every few minutes."""
    removed_retention = timedelta(days=settings.removed_retention_days)
    while True:
        try:
            await run_in_threadpool(
                lambda: purge_expired(images=ports.images, vault=ports.vault, audit=ports.audit)
            )
        except Exception:
            log.exception("evidence sweep failed; will retry")
        try:
            await run_in_threadpool(
                lambda: purge_removed(
                    images=ports.images,
                    jobs=ports.jobs,
                    blobs=ports.blobs,
                    audit=ports.audit,
                    retention=removed_retention,
                )
            )
        except Exception:
            log.exception("removed images sweep failed; will retry")
        await asyncio.sleep(settings.evidence_sweep_interval_s)
