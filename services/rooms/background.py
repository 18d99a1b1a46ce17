"""The rooms service's background work for the app's lifetime: the relay threads, the
``image.scanned`` and ``image.takedown`` consumers, moderators' ``room.moderated`` events, the
sweeper, and the refresh that re-reads this process's live rooms from MongoDB (mutes, ends
and removals whose events were lost) and keeps its members' nicknames held.

The refresh also withdraws image messages whose image stopped being ``cleared`` (the owner
deleted it, reports hid it, a reviewer held or removed it): they become ``removed`` (by
``image_status``) and leave every page. Withdrawal is final: an image cleared again later does
not come back into the room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi.concurrency import run_in_threadpool

from services.rooms import consumers, domain, images, metrics, moderation, relay
from services.rooms.hub import CLIENTS, Hub
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.shared import roommod
from services.shared.events import IMAGE_SCANNED, IMAGE_TAKEN_DOWN, RoomModerated
from services.shared.lag import lag_monitor
from services.shared.mongo import Doc
from services.shared.repos import now
from services.shared.status import may_serve

log = logging.getLogger(__name__)


def apply_moderated(hub: Hub, event: RoomModerated, clients: Iterable[str] = ()) -> None:
    """A moderator's move (already in MongoDB) reaches this process's connections. A mute
    also mutes ``clients`` (the muted member's, from MongoDB) and those of local connections
    under the nickname."""
    if event.action == "remove_message" and event.message_id:
        hub.deliver(event.room_id, {"type": "removed", "id": event.message_id})
    elif event.action == "mute" and event.nickname:
        frame = {"type": "muted", "nickname": event.nickname, CLIENTS: sorted(set(clients))}
        hub.deliver(event.room_id, frame)
    elif event.action == "close":
        hub.deliver(event.room_id, {"type": "closed", "reason": "moderator"})
    else:
        return
    metrics.MODERATION.labels(event.action, "event").inc()


def mute_member_clients(p: Ports, room_id: str, nickname: str) -> list[str]:
    """Record the client behind a muted nickname (its ``room_members`` doc) in the room doc's
    ``muted_clients`` (nicknames joining from it later are muted too); returns it. Not the
    owner's: the owner is never muted, nor are others for sharing the owner's address. (Each
    process also records the clients of its own connections under the nickname when the
    muted frame is applied.)"""
    member = p.members.get(room_id, domain.nick_key(nickname))
    ok = member is not None and member.get("client") and not member.get("owner")
    clients = [str(member["client"])] if member is not None and ok else []
    if clients:
        roommod.mute_clients(p.db, room_id, clients)
    return clients


def sync_muted_clients(p: Ports, docs: list[Doc]) -> None:
    """Mutes whose event the broker lost: the clients of members under a muted nickname go
    into the room doc (and into ``docs``)."""
    wanted = [
        p.members.member_id(str(doc["_id"]), str(key))
        for doc in docs
        if domain.end_reason(doc, now()) is None
        for key in doc.get("muted") or []
    ]
    by_room = {str(doc["_id"]): doc for doc in docs}
    for member in p.members.by_ids(wanted):
        doc = by_room.get(str(member.get("room_id")))
        client = str(member.get("client") or "")
        if doc is None or not client or member.get("owner"):
            continue
        if client in (doc.get("muted_clients") or []):
            continue
        roommod.mute_clients(p.db, str(doc["_id"]), [client])
        doc["muted_clients"] = [*(doc.get("muted_clients") or []), client]


def withdraw_uncleared(p: Ports, room_ids: list[str]) -> list[Doc]:
    """Visible image messages of these rooms whose image is no longer ``cleared`` (one batched
    read of the statuses) become ``removed``; returns them (withdrawn here or by another
    process meanwhile) for the live sockets."""
    messages = p.messages.visible_images(room_ids)
    image_ids = sorted({str(m.get("image_id")) for m in messages if m.get("image_id")})
    statuses = p.images.statuses(image_ids) if image_ids else {}
    gone = []
    for msg in messages:
        status = statuses.get(str(msg.get("image_id")), "gone")
        if may_serve(status):
            continue
        if roommod.withdraw_message(p.db, str(msg["_id"]), f"image {status}"):
            metrics.MODERATION.labels("remove_message", "image_status").inc()
        gone.append(msg)
    return gone


@dataclass
class Refreshed:
    docs: list[Doc]
    removed: list[Doc]
    withdrawn: list[Doc] = field(default_factory=list)


def _read(
    p: Ports,
    room_ids: list[str],
    member_ids: list[str],
    since: datetime,
) -> Refreshed:
    p.members.touch(member_ids, now())
    docs = p.rooms.many(room_ids)
    sync_muted_clients(p, docs)
    live = [str(d["_id"]) for d in docs if domain.end_reason(d, now()) is None]
    withdrawn = withdraw_uncleared(p, live)
    return Refreshed(docs, p.messages.removed_since(room_ids, since), withdrawn)


def refresh_once(
    hub: Hub, docs: list[Doc], removed: list[Doc], withdrawn: Iterable[Doc] = ()
) -> None:
    """Bring this process's views in line with MongoDB. Removals already delivered here are
    not delivered again (the hub remembers them per view)."""
    at = now()
    for doc in docs:
        room_id = str(doc["_id"])
        view = hub.view(room_id)
        if view is None:
            continue
        hub.set_mutes(room_id, set(doc.get("muted") or []), set(doc.get("muted_clients") or []))
        reason = domain.end_reason(doc, at)
        if reason is not None and view.closed_by is None:
            hub.deliver(room_id, {"type": "closed", "reason": reason})
    for msg in [*removed, *withdrawn]:
        hub.deliver(str(msg["room_id"]), {"type": "removed", "id": str(msg["_id"])})


async def refresh_loop(hub: Hub, p: Ports, every_s: float) -> None:
    since = now()
    while True:
        await asyncio.sleep(every_s)
        started = now()
        try:
            got = await run_in_threadpool(
                _read, p, hub.local_room_ids(), hub.member_ids(), since - timedelta(seconds=1)
            )
            refresh_once(hub, got.docs, got.removed, got.withdrawn)
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
            clients: list[str] = []
            if event.action == "mute" and event.nickname:
                try:
                    clients = mute_member_clients(p, event.room_id, event.nickname)
                except Exception:  # the refresh records them from MongoDB later
                    log.warning("recording a mute's clients failed", exc_info=True)
            loop.call_soon_threadsafe(apply_moderated, hub, event, clients)

        # Run in the consumer threads: their lines carry the record's trace id, one line per
        # event (messages: how many this event moved; the sweeper's reconcile or the refresh
        # may have moved them first).
        def on_scanned(payload: Any) -> None:
            moved = images.settle_image(p, payload.image_id, "event", hub.emit_threadsafe)
            log.info(
                "image.scanned handled",
                extra={"image_id": payload.image_id, "verdict": payload.verdict, "messages": moved},
            )

        def on_takedown(payload: Any) -> None:
            removed = images.take_down(p, payload.image_id, hub.emit_threadsafe)
            log.info(
                "image.takedown handled", extra={"image_id": payload.image_id, "messages": removed}
            )

        threads = [
            relay.start_listener(
                settings, hub.instance_id, hub.relay_threadsafe, on_moderated, stop
            ),
            consumers.start(
                settings,
                consumers.SCANS_GROUP,
                IMAGE_SCANNED,
                on_scanned,
                stop,
                "scans",
                relay_out.publisher,
            ),
            consumers.start(
                settings,
                consumers.TAKEDOWNS_GROUP,
                IMAGE_TAKEN_DOWN,
                on_takedown,
                stop,
                "takedowns",
                relay_out.publisher,
            ),
        ]
        lag = lag_monitor(
            settings,
            {
                consumers.SCANS_GROUP: [IMAGE_SCANNED.topic],
                consumers.TAKEDOWNS_GROUP: [IMAGE_TAKEN_DOWN.topic],
            },
        )
        lag.start()
        try:
            await asyncio.gather(
                sweeper_loop(hub, p, settings), refresh_loop(hub, p, settings.rooms_refresh_s)
            )
        finally:
            stop.set()
            await asyncio.to_thread(lag.stop)
            hub.close_all()
            for thread in threads:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(thread.join, 3)
            await asyncio.to_thread(relay_out.stop)

    return run
