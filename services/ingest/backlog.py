"""The pending backlog as gauges, read from MongoDB every few seconds.

Pending images are never shown (fail closed), so the age of the oldest one is the SLO that
matters to uploaders: it grows while the scanners are stopped or behind, and while the broker
is down (``chatpic_ingest_outbox_unpublished`` then says the announcements are stuck in the
outbox, not in the scanners). Three indexed queries (status prefix), milliseconds each."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool

from services.ingest import metrics
from services.shared.repos import ImageRepo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    pending: int
    unpublished: int
    oldest_age_s: float


def read_backlog(images: ImageRepo) -> Backlog:
    pending, unpublished = images.count_pending(), images.count_unannounced()
    return Backlog(pending, unpublished, images.oldest_pending_age_s())


def publish(backlog: Backlog) -> None:
    metrics.PENDING_IMAGES.set(backlog.pending)
    metrics.OUTBOX_UNPUBLISHED.set(backlog.unpublished)
    metrics.OLDEST_PENDING_AGE.set(backlog.oldest_age_s)


async def backlog_loop(images: ImageRepo, every_s: float) -> None:
    """For the app's lifetime. While the database is unreachable the gauges keep their last
    values (logged once per outage; /readyz and chatpic_dependency_up say the rest)."""
    failing = False
    while True:
        try:
            publish(await run_in_threadpool(read_backlog, images))
            if failing:
                log.info("backlog gauges refreshed again")
            failing = False
        except Exception as exc:
            if not failing:
                log.warning("backlog gauges not refreshed; will retry", extra={"err": repr(exc)})
            failing = True
        await asyncio.sleep(every_s)
