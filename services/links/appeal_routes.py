"""Appeals: the uploader of a removed image asks for a second look, proving ownership with the
owner token (the same answer for a wrong token as for no such image). The appeal lands in the
review console's ``appeals`` queue; one appeal per removal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.links import metrics
from services.links.creation import owned_image
from services.links.ports import Ports
from services.links.settings import LinksSettings
from services.shared import jobrepo
from services.shared.errors import Conflict
from services.shared.repos import ImageRepo, now
from services.shared.status import ImageStatus

MAX_MESSAGE = 2000


class AppealRequest(BaseModel):
    image_id: str = Field(max_length=64)
    owner_token: str = Field(max_length=128)
    message: str = Field(default="", max_length=MAX_MESSAGE)


def file_appeal(
    *,
    images: ImageRepo,
    jobs: jobrepo.JobRepo,
    salt: bytes,
    image_id: str,
    owner_token: str,
    message: str,
) -> str:
    """Open an appeals job for the owner's removed image; returns the job id."""
    doc = owned_image(images, salt, image_id, owner_token)
    if doc.get("status") != ImageStatus.REMOVED.value:
        raise Conflict("Only a removed photo can be appealed.", code="not_removed")
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
    return job_id


def appeal_router(settings: LinksSettings, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()

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
            )
        )
        metrics.APPEALS.inc()
        return {"appeal_id": job_id, "status": "open"}

    return router
