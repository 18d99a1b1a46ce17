"""The rooms service's background work for the app's lifetime: the relay threads, the
``image.scanned`` and ``image.takedown`` consumers, moderators' ``room.moderated`` events, the
sweeper, and the refresh that re-reads this process's live rooms from MongoDB (mutes, ends
and removals whose events were lost) and keeps its members' nicknames held."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from fastapi.concurrency import run_in_threadpool

from services.rooms import consumers, domain, images, metrics, moderation, relay
from services.rooms.hub import Hub
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.shared.events import IMAGE_SCANNED, IMAGE_TAKEN_DOWN, RoomModerated
from services.shared.mongo import Doc
from services.shared.repos import now

log = logging.getLogger(__name__)


def apply_moderated(hub: Hub, event: RoomModerated) -> None:
    """A moderator's move (already in MongoDB) reaches this process's connections."""
    if event.action == "remove_message" and event.message_id:
        hub.deliver(event.room_id, {"type": "removed", "id": event.message_id})
    elif event.action == "mute" and event.nickname:
        hub.deliver(event.room_id, {"type": "muted", "nickname": event.nickname})
    elif event.action == "close":
        hub.deliver(event.room_id, {"type": "closed", "reason": "moderator"})
    else:
        return
    metrics.MODERATION.labels(event.action, "event").inc()


def _read(
    p: Ports,
    room_ids: list[str],
    member_ids: list[str],
    since: datetime,
) -> tuple[list[Doc], list[Doc]]:
    p.members.touch(member_ids, now())
    return p.rooms.many(room_ids), p.messages.removed_since(room_ids, since)


def refresh_once(hub: Hub, docs: list[Doc], removed: list[Doc]) -> None:
    at = now()
    for doc in docs:
        room_id = str(doc["_id"])
        view = hub.view(room_id)
        if view is None:
            continue
        view.muted = set(doc.get("muted") or [])
        reason = domain.end_reason(doc, at)
        if reason is not None and view.closed_by is None:
            hub.deliver(room_id, {"type": "closed", "reason": reason})
    for msg in removed:
        hub.deliver(str(msg["room_id"]), {"type": "removed", "id": str(msg["_id"])})


async def refresh_loop(hub: Hub, p: Ports, every_s: float) -> None:
    since = now()
    while True:
        await asyncio.sleep(every_s)
        started = now()
        try:
            docs, removed = await run_in_threadpool(
                _read, p, hub.local_room_ids(), hub.member_ids(), since - timedelta(seconds=1)
            )
            refresh_once(hub, docs, removed)
            since = started
        except Exception:
            log.warning("rooms refresh failed; will retry", exc_info=True)


async def sweeper_loop(hub: Hub, p: Ports, settings: RoomsSettings) -> None:
    while True:
        try:
            result = await run_in_threadpool(moderation.sweep, p, settings, hub.emit_threadsafe)
            if result.closed or result.purged:
                log.info("rooms sweep", extra={"closed": result.closed, "purged": result.purged})
        except Exception:
            metrics.SWEEP_ERRORS.inc()
            log.warning("rooms sweep failed; will retry", exc_info=True)
        await asyncio.sleep(settings.rooms_sweep_interval_s)


def background(
    settings: RoomsSettings, hub: Hub, relay_out: relay.RelayOut
) -> Callable[[Ports], Coroutine[Any, Any, None]]:
    async def run(p: Ports) -> None:
        loop = asyncio.get_running_loop()
        hub.loop = loop
        stop = threading.Event()
        relay_out.start()

        def on_moderated(event: RoomModerated) -> None:
            loop.call_soon_threadsafe(apply_moderated, hub, event)

        def on_scanned(payload: Any) -> None:
            images.settle_image(p, payload.image_id, "event", hub.emit_threadsafe)

        def on_takedown(payload: Any) -> None:
            images.take_down(p, payload.image_id, hub.emit_threadsafe)

        threads = [
            relay.start_listener(
                settings, hub.instance_id, hub.relay_threadsafe, on_moderated, stop
            ),
            consumers.start(
                settings, consumers.SCANS_GROUP, IMAGE_SCANNED, on_scanned, stop, "scans"
            ),
            consumers.start(
                settings,
                consumers.TAKEDOWNS_GROUP,
                IMAGE_TAKEN_DOWN,
                on_takedown,
                stop,
                "takedowns",
            ),
        ]
        try:
            await asyncio.gather(
                sweeper_loop(hub, p, settings), refresh_loop(hub, p, settings.rooms_refresh_s)
            )
        finally:
            stop.set()
            hub.close_all()
            for thread in threads:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(thread.join, 3)
            await asyncio.to_thread(relay_out.stop)

    return run
