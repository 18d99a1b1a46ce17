"""The review service's own intake, run every few seconds (idempotent):

- every image the scanner held (status ``review``) with no open job gets a ``scanner`` job
  (reports and appeals are opened where they are filed, on the links service);
- open jobs whose image moved on without them (removed by a bank match, deleted by its owner,
  swept) are closed, so nobody is handed a job with nothing left to decide;
- the queue gauges (depth, oldest job age) are refreshed, the rooms queue's (open room
  reports) too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool

from services.review import metrics, rooms
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared import jobrepo
from services.shared.repos import now
from services.shared.status import ImageStatus

log = logging.getLogger(__name__)

HELD_BATCH = 500
OPEN_BATCH = 2000
# The image statuses each kind of job is about; anything else makes the job moot.
LIVE_FOR_KIND = {
    jobrepo.REPORTS: {ImageStatus.CLEARED.value, ImageStatus.REVIEW.value},
    jobrepo.SCANNER: {ImageStatus.REVIEW.value},
    jobrepo.APPEALS: {ImageStatus.REMOVED.value},
}


@dataclass(frozen=True)
class SyncResult:
    opened: int
    closed: int


def open_scanner_jobs(p: Ports) -> int:
    held = p.images.list_by_status(ImageStatus.REVIEW, limit=HELD_BATCH)
    ids = [str(d["_id"]) for d in held]
    if not ids:
        return 0
    busy = p.jobs.open_image_ids(ids)
    opened = 0
    for doc in held:
        image_id = str(doc["_id"])
        if image_id in busy:
            continue
        reasons = list((doc.get("verdict") or {}).get("reasons") or [])
        if p.jobs.open_job(jobrepo.SCANNER, image_id, {"verdict_reasons": reasons}):
            opened += 1
    if opened:
        metrics.JOBS_OPENED.labels(jobrepo.SCANNER).inc(opened)
    return opened


def close_moot_jobs(p: Ports) -> int:
    jobs = p.jobs.open_jobs(OPEN_BATCH)
    if not jobs:
        return 0
    statuses = p.images.statuses(sorted({str(j["image_id"]) for j in jobs}))
    closed = 0
    for job in jobs:
        status = statuses.get(str(job["image_id"]), "gone")
        if status in LIVE_FOR_KIND.get(str(job["kind"]), set()):
            continue
        full = p.jobs.get(str(job["_id"]))
        if full is not None and p.jobs.close(full, f"image_{status}"):
            metrics.JOBS_CLOSED.labels(f"image_{status}").inc()
            closed += 1
    return closed


def refresh_gauges(p: Ports) -> None:
    at = now()
    for queue in jobrepo.QUEUES:
        depth, oldest = p.jobs.depth(queue)
        metrics.QUEUE_DEPTH.labels(queue).set(depth)
        age = (at - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OLDEST_JOB_AGE.labels(queue).set(max(0.0, age))


def sync_once(p: Ports) -> SyncResult:
    opened = open_scanner_jobs(p)
    closed = close_moot_jobs(p)
    refresh_gauges(p)
    return SyncResult(opened, closed)


async def intake_loop(settings: ReviewSettings, p: Ports) -> None:
    """For the app's lifetime; an error is logged and the next pass tries again."""
    while True:
        try:
            await run_in_threadpool(sync_once, p)
        except Exception:
            log.exception("review intake pass failed; will retry")
        try:
            await run_in_threadpool(rooms.refresh_gauges, p.rooms)
        except Exception:
            log.exception("rooms queue gauges not refreshed; will retry")
        await asyncio.sleep(settings.review_intake_interval_s)
