"""Queues and jobs, over HTTP: the JSON API and the server-rendered pages (queue ``/`` and job
``/jobs/{id}``, with keyboard shortcuts from ``static/jobs.js``). Thin: decode, call
``jobs``/``decisions`` in a worker thread, map the answer. Every route needs a signed-in
reviewer; unsafe methods also carry the CSRF token (``require_reviewer`` checks both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from gridfs.errors import NoFile
from pydantic import BaseModel, Field

from services.review import assets, decisions, jobs, rooms
from services.review.auth import Reviewer, require_reviewer
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared import jobrepo
from services.shared.errors import DomainError, NotFound
from services.shared.imageserve import image_response
from services.shared.pages import Pages

Me = Annotated[Reviewer, Depends(require_reviewer)]
FormText = Annotated[str, Form(max_length=600)]
_PREVIEW_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}


class NextRequest(BaseModel):
    skip: list[str] = Field(default_factory=list, max_length=50)


class DecisionRequest(BaseModel):
    action: str = Field(max_length=32)
    reason: str = Field(max_length=32)
    bank: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=jobs.MAX_NOTE)


def queue_router(settings: ReviewSettings, ports: Callable[[], Ports], pages: Pages) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_reviewer)])
    lease_s = settings.review_lease_s
    pages.env.filters.setdefault("age", jobs.human_age)

    # --- API ---------------------------------------------------------------------------------

    @router.get("/api/v1/queues")
    async def get_queues(me: Me) -> dict[str, Any]:
        """Depth and oldest job age of every job queue; ``rooms``: the same for the rooms
        queue (room reports are no leased jobs: ``/api/v1/room-reports``)."""
        p = ports()
        found = await run_in_threadpool(jobs.queue_summary, p, me)
        room_queue = await run_in_threadpool(rooms.queue_entry, p.rooms)
        return {"queues": found, "rooms": room_queue}

    @router.get("/api/v1/queues/{queue}")
    async def list_queue(queue: str, me: Me) -> dict[str, Any]:
        """The next jobs of one queue, in hand-out order, with who holds each."""
        if queue not in jobrepo.QUEUES:
            raise NotFound("Unknown queue.", code="unknown_queue")
        found = await run_in_threadpool(jobs.queue_listing, ports(), queue, me)
        return {"queue": queue, "jobs": found}

    @router.post("/api/v1/queues/{queue}/next")
    async def next_job(queue: str, me: Me, req: NextRequest | None = None) -> dict[str, Any]:
        """Lease the next job of the queue (``job_id`` null when nothing is free)."""
        skip = set((req or NextRequest()).skip)
        p = ports()
        job = await run_in_threadpool(jobs.lease_next, p, queue, me, lease_s, skip)
        if job is None:
            return {"job_id": None, "job": None}
        view = await run_in_threadpool(jobs.job_view, p, str(job["_id"]), me)
        return {"job_id": view["job_id"], "job": view}

    @router.get("/api/v1/jobs/{job_id}")
    async def get_job(job_id: str, me: Me) -> dict[str, Any]:
        return await run_in_threadpool(jobs.job_view, ports(), job_id, me)

    @router.post("/api/v1/jobs/{job_id}/lease")
    async def take_job(job_id: str, me: Me) -> dict[str, Any]:
        p = ports()
        await run_in_threadpool(jobs.lease_job, p, job_id, me, lease_s)
        return await run_in_threadpool(jobs.job_view, p, job_id, me)

    @router.post("/api/v1/jobs/{job_id}/release")
    async def release_job(job_id: str, me: Me) -> dict[str, Any]:
        released = await run_in_threadpool(jobs.release_job, ports(), job_id, me)
        return {"released": released}

    @router.post("/api/v1/jobs/{job_id}/decision")
    async def decide(job_id: str, req: DecisionRequest, me: Me) -> dict[str, Any]:
        """Decide the job (clear, remove, remove_ban, escalate, uphold, overturn) with a
        policy reason; the answer names the next job, already leased to you."""
        done = await run_in_threadpool(
            lambda: decisions.decide(
                ports(), settings, job_id, me, req.action, req.reason, req.bank, req.note
            )
        )
        return done.to_dict()

    @router.get("/api/v1/jobs/{job_id}/image")
    async def job_image(job_id: str) -> Response:
        """The image under review (no-store; the page blurs it unless revealed)."""
        p = ports()

        def load() -> tuple[bytes, str]:
            job = jobs.get_job(p, job_id)
            image = p.images.get(str(job["image_id"])) or {}
            if not image.get("blob_id"):
                raise NotFound("No preview: the image's bytes are gone.", code="no_preview")
            try:
                data = p.blobs.get(str(image["blob_id"]))
            except NoFile as exc:
                raise NotFound(
                    "No preview: the image's bytes are gone.", code="no_preview"
                ) from exc
            kind = str(image.get("content_type") or "")
            return data, kind if kind in _PREVIEW_TYPES else "application/octet-stream"

        data, content_type = await run_in_threadpool(load)
        return image_response(data, content_type)

    # --- pages -------------------------------------------------------------------------------

    @router.get("/assets/jobs.js", include_in_schema=False)
    async def script() -> Response:
        return assets.script("jobs.js")

    @router.get("/assets/notice.js", include_in_schema=False)
    async def notice_script() -> Response:
        """Every console page loads it: a notice from a redirect (?done=...) shows once."""
        return assets.script("notice.js")

    async def queue_page(me: Reviewer, status: int = 200, **extra: Any) -> Response:
        p = ports()
        summary = await run_in_threadpool(jobs.queue_summary, p, me)
        listings = {
            q["queue"]: await run_in_threadpool(jobs.queue_listing, p, q["queue"], me, 10)
            for q in summary
        }
        room_queue = await run_in_threadpool(rooms.queue_entry, p.rooms)
        return pages.render(
            "queue.html",
            status,
            me=me,
            request_path="/",
            queues=summary,
            rooms_queue=room_queue,
            listings=listings,
            lease_min=max(1, lease_s // 60),
            **extra,
        )

    @router.get("/", include_in_schema=False)
    async def queue(me: Me, empty: str = "", done: str = "") -> Response:
        return await queue_page(
            me,
            empty=empty if empty in jobrepo.QUEUES else "",
            done=done if done in {a.value for a in jobs.Action} else "",
        )

    async def job_page(me: Reviewer, job_id: str, status: int = 200, **extra: Any) -> Response:
        view = await run_in_threadpool(jobs.job_view, ports(), job_id, me)
        return pages.render(
            "job.html",
            status,
            me=me,
            request_path=f"/jobs/{job_id}",
            job=view,
            reasons=jobs.POLICY_REASONS,
            banks=await run_in_threadpool(ports().banks.bank_names),
            default_bank=jobs.DEFAULT_BAN_BANK,
            reveal=bool(me.prefs.get("reveal_previews")),
            **extra,
        )

    @router.get("/jobs/{job_id}", include_in_schema=False)
    async def job(job_id: str, me: Me, done: str = "") -> Response:
        return await job_page(
            me, job_id, done=done if done in {a.value for a in jobs.Action} else ""
        )

    def goto_next(queue: str, job_id: str | None, done: str = "") -> Response:
        if job_id:
            target = f"/jobs/{job_id}" + (f"?{urlencode({'done': done})}" if done else "")
        else:
            target = "/?" + urlencode({k: v for k, v in (("empty", queue), ("done", done)) if v})
        return RedirectResponse(target, status_code=303)

    @router.post("/queues/{queue}/next", include_in_schema=False)
    async def next_page(queue: str, me: Me) -> Response:
        try:
            job = await run_in_threadpool(jobs.lease_next, ports(), queue, me, lease_s)
        except DomainError as exc:
            return await queue_page(me, exc.status, error=exc)
        return goto_next(queue, str(job["_id"]) if job else None)

    @router.post("/jobs/{job_id}/lease", include_in_schema=False)
    async def take_page(job_id: str, me: Me) -> Response:
        try:
            await run_in_threadpool(jobs.lease_job, ports(), job_id, me, lease_s)
        except DomainError as exc:
            return await job_page(me, job_id, exc.status, error=exc)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    @router.post("/jobs/{job_id}/skip", include_in_schema=False)
    async def skip_page(job_id: str, me: Me) -> Response:
        p = ports()
        job = await run_in_threadpool(jobs.get_job, p, job_id)
        await run_in_threadpool(jobs.release_job, p, job_id, me)
        queue = str(job["queue"])
        try:
            nxt = await run_in_threadpool(jobs.lease_next, p, queue, me, lease_s, {job_id})
        except DomainError as exc:
            return await queue_page(me, exc.status, error=exc)
        return goto_next(queue, str(nxt["_id"]) if nxt else None)

    @router.post("/jobs/{job_id}/decision", include_in_schema=False)
    async def decide_page(
        job_id: str,
        me: Me,
        action: FormText = "",
        reason: FormText = "",
        bank: FormText = "",
        note: FormText = "",
    ) -> Response:
        p = ports()
        try:
            job = await run_in_threadpool(jobs.get_job, p, job_id)
            done = await run_in_threadpool(
                lambda: decisions.decide(
                    p, settings, job_id, me, action, reason, bank or None, note
                )
            )
        except DomainError as exc:
            if exc.code == "job_not_found":
                raise
            form = {"action": action, "reason": reason, "bank": bank, "note": note}
            return await job_page(me, job_id, exc.status, error=exc, form=form)
        return goto_next(str(job["queue"]), done.next_job_id, done.action)

    return router
