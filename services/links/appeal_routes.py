"""Appeals: the uploader of a removed image asks for a second look, proving ownership with the
owner token (the same answer for a wrong token as for no such image). The appeal lands in the
review console's ``appeals`` queue; one appeal per removal, within the appeal window
(``CHATPIC_REMOVED_RETENTION_DAYS`` after the removal; then review purges the bytes, and a
photo without bytes cannot be restored): later, ``409 appeal_window_closed``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.links import metrics
from services.links.creation import owned_image
from services.links.ports import Ports
from services.links.settings import LinksSettings
from services.shared import jobrepo
from services.shared.errors import Conflict
from services.shared.mongo import Doc
from services.shared.repos import ImageRepo, now
from services.shared.status import ImageStatus

MAX_MESSAGE = 2000


class AppealRequest(BaseModel):
    image_id: str = Field(max_length=64)
    owner_token: str = Field(max_length=128)
    message: str = Field(default="", max_length=MAX_MESSAGE)


class AppealWindowClosed(Conflict):
    code = "appeal_window_closed"

    def __init__(self, window: timedelta, closed_at: datetime | None) -> None:
        days = window.total_seconds() / 86400
        super().__init__(
            f"A removal can be appealed for {days:g} days; this one no longer can, and the "
            "photo has been or is being deleted.",
            appeal_window_days=days,
            closed_at=closed_at.isoformat() if closed_at is not None else None,
        )


def _window_end(doc: Doc, window: timedelta) -> datetime | None:
    removed_at = (doc.get("removal") or {}).get("at")
    if not isinstance(removed_at, datetime):
        return None
    if removed_at.tzinfo is None:  # a client without tz_aware reads naive UTC
        removed_at = removed_at.replace(tzinfo=UTC)
    return removed_at + window


def _check_window(doc: Doc, window: timedelta, at: datetime) -> None:
    """Refuse once the window ended, or once review started purging the bytes."""
    ends = _window_end(doc, window)
    purging = doc.get("purged_at") is not None or doc.get("purge_started_at") is not None
    if purging or (ends is not None and ends <= at):
        raise AppealWindowClosed(window, ends)


def file_appeal(
    *,
    images: ImageRepo,
    jobs: jobrepo.JobRepo,
    salt: bytes,
    image_id: str,
    owner_token: str,
    message: str,
    window: timedelta,
) -> str:
    """Open an appeals job for the owner's removed image, within the appeal window; returns
    the job id."""
    doc = owned_image(images, salt, image_id, owner_token)
    if doc.get("status") != ImageStatus.REMOVED.value:
        raise Conflict("Only a removed photo can be appealed.", code="not_removed")
    _check_window(doc, window, now())
    removal = doc.get("removal") or {}
    removed_at = removal.get("at")
    if isinstance(removed_at, datetime) and jobs.settled_since(
        jobrepo.APPEALS, image_id, removed_at
    ):
        raise Conflict("This removal was already appealed and reviewed.", code="appeal_decided")
    job_id = jobs.open_job(
        jobrepo.APPEALS,
        image_id,
        {
            "appeal": {"message": message.strip()[:MAX_MESSAGE], "at": now()},
            "removal_reason": removal.get("reason"),
        },
    )
    if job_id is None:
        raise Conflict("An appeal of this photo is already waiting.", code="appeal_pending")
    try:  # a purge that started meanwhile wins: it saw no open appeal (evidence.py, "Races")
        _check_window(images.get(image_id) or {}, window, now())
    except AppealWindowClosed:
        job = jobs.get(job_id)
        if job is not None:
            jobs.close(job, "appeal_window_closed")
        raise
    return job_id


def appeal_router(settings: LinksSettings, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()
    window = timedelta(days=settings.removed_retention_days)

    @router.post("/api/v1/appeals", status_code=201)
    async def create_appeal(req: AppealRequest) -> dict[str, str]:
        p = ports()
        job_id = await run_in_threadpool(
            lambda: file_appeal(
                images=p.images,
                jobs=p.jobs,
                salt=salt,
                image_id=req.image_id,
                owner_token=req.owner_token,
                message=req.message,
                window=window,
            )
        )
        metrics.APPEALS.inc()
        return {"appeal_id": job_id, "status": "open"}

    return router
