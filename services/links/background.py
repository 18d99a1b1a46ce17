"""The links service's background work, run for the app's lifetime: the sweeper that deletes
the bytes of images nothing may show any more, and the consumer of `image.takedown` that ends
every link of a removed image."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from services.links import metrics, sweeper, takedowns
from services.links.ports import Ports
from services.links.settings import LinksSettings
from services.shared.events import IMAGE_TAKEN_DOWN
from services.shared.lag import lag_monitor
from services.shared.repos import now


def _count_sweep(result: sweeper.SweepResult) -> None:
    for reason, count in result.by_reason.items():
        metrics.SWEEPER_DELETIONS.labels(reason).inc(count)


def _sweep(p: Ports, settings: LinksSettings) -> sweeper.SweepResult:
    at = now()
    ended = takedowns.reconcile(p.images.col, p.links.col, p.tickets.col, at)
    if ended:
        metrics.KILLED_BY_TAKEDOWN.inc(ended)
    return sweeper.sweep_once(
        p.images,
        p.links.col,
        p.tickets.col,
        p.blobs,
        at,
        settings.unlinked_ttl_s,
        settings.image_record_retention_s,
        fetch_grace_s=settings.ticket_fetch_grace_s,
    )


def background(settings: LinksSettings) -> Callable[[Ports], Coroutine[Any, Any, None]]:
    async def run(p: Ports) -> None:
        stop = threading.Event()
        consumer = takedowns.start(
            settings,
            p.links.col,
            p.tickets.col,
            stop,
            on_killed=metrics.KILLED_BY_TAKEDOWN.inc,
            on_dead_letter=lambda reason: metrics.TAKEDOWN_DEAD_LETTERS.labels(reason).inc(),
            in_force=takedowns.not_cleared(p.images.col),
        )
        lag = lag_monitor(settings, {takedowns.GROUP_ID: [IMAGE_TAKEN_DOWN.topic]})
        lag.start()
        try:
            await sweeper.sweeper_loop(
                lambda: _sweep(p, settings),
                settings.sweep_interval_s,
                on_result=_count_sweep,
                on_error=lambda _: metrics.SWEEPER_ERRORS.inc(),
            )
        finally:
            stop.set()
            await asyncio.to_thread(lag.stop)
            await asyncio.to_thread(consumer.join, 5)

    return run
