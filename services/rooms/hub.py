"""This process's live connections, by room, and frame delivery to them.

Every frame is JSON-encoded once and put on each target connection's bounded queue; one writer
task per connection sends it. Broadcasting never awaits a socket (a slow reader is dropped when
its queue fills) and never waits for the broker: frames for other processes go to the relay's
own thread. Control frames (kicked, closed, muted) also act on the local connections they
name, whichever process they came from.

Fields whose name starts with ``_`` are internal (the relay target, the salted client keys of
a muted member): processes read them, sockets never get them. A kick ends the connections of
the kicked member (its nickname), never the owner's, so people behind one address are not
kicked together. A mute refuses posts under the muted nickname, and under any nickname that
joins later from the muted member's client (no way around it by renaming); other members
already there from that address keep talking, and the owner's connections are never muted.
Each room view remembers the message ids it removed, so a removal reaches each socket once
however many paths (event, relay, refresh) bring it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket

from services.rooms import metrics
from services.shared.roommod import nick_key

log = logging.getLogger(__name__)

TARGET = "_to"  # internal field of a relayed frame: deliver to this nickname key only
CLIENTS = "_clients"  # internal field of a muted frame: the muted member's client keys
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008

Item = tuple[str, float] | None


@dataclass(eq=False)
class Conn:
    socket: WebSocket
    conn_id: str
    room_id: str
    slug: str
    nickname: str
    key: str
    tripcode: str | None
    client: str
    queue: asyncio.Queue[Item]
    owner: bool = False  # joined proving the room's owner key: never kicked nor muted
    client_muted: bool = False  # joined from a muted member's client: muted under any nickname
    ending: bool = False
    final: dict[str, Any] | None = None  # sent just before the server closes the socket
    writer: asyncio.Task[None] | None = None

    def push(self, text: str, at: float) -> bool:
        if self.ending:
            return True
        try:
            self.queue.put_nowait((text, at))
        except asyncio.QueueFull:
            metrics.SLOW_DROPPED.inc()
            self.end(None)
            return False
        return True

    def end(self, final: dict[str, Any] | None) -> None:
        """Close this connection after sending ``final`` (frames still queued are dropped)."""
        if self.ending:
            return
        self.ending = True
        self.final = final
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def write(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                text, at = item
                await self.socket.send_text(text)
                metrics.FRAMES_DELIVERED.labels("local").inc()
                metrics.DELIVERY_LATENCY.observe(time.perf_counter() - at)
            if self.final is not None:
                await self.socket.send_text(json.dumps(self.final))
            code = CLOSE_POLICY if (self.final or {}).get("type") == "error" else CLOSE_NORMAL
            with contextlib.suppress(RuntimeError):
                await self.socket.close(code)
        except Exception:
            # The peer went away mid-send: the reader notices and cleans up.
            self.ending = True


@dataclass
class RoomView:
    """What this process caches of a room doc between refreshes (mutes, end, removals).

    The socket refuses posts when ``Hub.is_muted(conn)``. ``muted`` holds the muted nickname
    keys plus the keys of this process's connections that joined from a muted client; the hub
    keeps it in step with ``muted_nicks`` and ``muted_clients`` (the salted client keys of
    muted members: a nickname joining from one of them later is muted too)."""

    slug: str
    expires_at: Any
    muted: set[str] = field(default_factory=set)
    closed_by: str | None = None
    idle_pushed_at: float = 0.0  # when this process last pushed the room's idle deadline
    muted_nicks: set[str] = field(default_factory=set)
    muted_clients: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)  # message ids whose removal was delivered

    def __post_init__(self) -> None:
        self.muted_nicks |= self.muted


def public_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame as sockets get it: without internal fields."""
    return {k: v for k, v in frame.items() if not k.startswith("_")}


Relay = Callable[[str, dict[str, Any]], None]


class Hub:
    def __init__(self, instance_id: str, relay: Relay, queue_size: int = 256) -> None:
        self.instance_id = instance_id
        self.relay = relay
        self.queue_size = queue_size
        self.rooms: dict[str, dict[str, Conn]] = {}
        self.views: dict[str, RoomView] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- connections -------------------------------------------------------------------
    def new_queue(self) -> asyncio.Queue[Item]:
        return asyncio.Queue(maxsize=self.queue_size)

    def add(self, conn: Conn, view: RoomView) -> None:
        self.loop = asyncio.get_running_loop()
        members = self.rooms.setdefault(conn.room_id, {})
        old = members.get(conn.key)
        if old is not None and old is not conn:
            old.end({"type": "error", "code": "replaced", "message": "Joined elsewhere."})
        members[conn.key] = conn
        kept = self.views.setdefault(conn.room_id, view)
        if kept is not view:  # the joiner read the room doc just now: mutes only grow
            kept.muted_nicks |= view.muted_nicks
            kept.muted_clients |= view.muted_clients
        # Joining after a mute of its client: muted under this (new) nickname too.
        conn.client_muted = not conn.owner and conn.client in kept.muted_clients
        self._remute(conn.room_id)
        conn.writer = asyncio.create_task(conn.write())
        self._gauges()

    def remove(self, conn: Conn) -> bool:
        """Forget ``conn``; True if it was still this room's holder of its nickname."""
        members = self.rooms.get(conn.room_id, {})
        held = members.get(conn.key) is conn
        if held:
            del members[conn.key]
        if not members:
            self.rooms.pop(conn.room_id, None)
            self.views.pop(conn.room_id, None)
        elif held:
            self._remute(conn.room_id)
        conn.end(None)
        self._gauges()
        return held

    def _gauges(self) -> None:
        metrics.ROOMS_LIVE.set(len(self.rooms))
        metrics.CONNECTIONS.set(sum(len(m) for m in self.rooms.values()))

    def local_room_ids(self) -> list[str]:
        return list(self.rooms)

    def member_ids(self) -> list[str]:
        return [f"{c.room_id}:{c.key}" for m in self.rooms.values() for c in m.values()]

    def view(self, room_id: str) -> RoomView | None:
        return self.views.get(room_id)

    # -- mutes -------------------------------------------------------------------------
    def _remute(self, room_id: str) -> None:
        view = self.views.get(room_id)
        if view is None:
            return
        members = self.rooms.get(room_id, {})
        view.muted = view.muted_nicks | {c.key for c in members.values() if c.client_muted}

    def is_muted(self, conn: Conn) -> bool:
        """May not post: its nickname is muted, or it joined from a muted client. Never the
        owner's connections."""
        view = self.views.get(conn.room_id)
        if view is None or conn.owner:
            return False
        return conn.client_muted or conn.key in view.muted_nicks

    def set_mutes(self, room_id: str, nicks: set[str], clients: set[str]) -> None:
        """The room doc's mutes (refresh), plus the clients of local connections under a
        muted nickname (for later joins from them: members already here are not muted)."""
        view = self.views.get(room_id)
        if view is None:
            return
        view.muted_nicks = set(nicks)
        view.muted_clients |= set(clients)
        view.muted_clients |= self._clients_of(room_id, view.muted_nicks)
        self._remute(room_id)

    def _clients_of(self, room_id: str, keys: set[str]) -> set[str]:
        members = self.rooms.get(room_id, {})
        return {c.client for k, c in members.items() if k in keys and c.client and not c.owner}

    # -- delivery ----------------------------------------------------------------------
    def broadcast(
        self, room_id: str, frame: dict[str, Any], to: str | None = None, relay: bool = True
    ) -> None:
        """Deliver here at once, then hand the frame to the relay for the other processes."""
        self.deliver(room_id, frame, to)
        if relay:
            self.relay(room_id, {**frame, TARGET: to} if to else frame)

    def from_relay(self, room_id: str, frame: dict[str, Any]) -> None:
        to = frame.pop(TARGET, None)
        if room_id in self.rooms:
            metrics.RELAY_RECEIVED.inc()
        self.deliver(room_id, frame, to if isinstance(to, str) else None)

    def deliver(self, room_id: str, frame: dict[str, Any], to: str | None = None) -> None:
        members = self.rooms.get(room_id)
        if not members:
            return
        if frame.get("type") == "removed" and to is None:
            view = self.views.get(room_id)
            removed_id = str(frame.get("id", ""))
            if view is not None:
                if removed_id in view.removed:
                    return  # this removal already reached this process's sockets
                view.removed.add(removed_id)
        text = json.dumps(public_frame(frame), separators=(",", ":"))
        at = time.perf_counter()
        targets = [members[to]] if to is not None and to in members else []
        for conn in targets if to is not None else list(members.values()):
            conn.push(text, at)
        self._apply(room_id, frame, members)

    def _apply(self, room_id: str, frame: dict[str, Any], members: dict[str, Conn]) -> None:
        kind = frame.get("type")
        view = self.views.get(room_id)
        if kind == "kicked":
            key = nick_key(str(frame.get("nickname", "")))
            for conn in list(members.values()):
                if conn.key == key and not conn.owner:
                    conn.end(
                        {
                            "type": "error",
                            "code": "kicked",
                            "message": "The room's owner removed you.",
                        }
                    )
        elif kind == "muted" and view is not None:
            key = nick_key(str(frame.get("nickname", "")))
            view.muted_nicks.add(key)
            given = frame.get(CLIENTS)
            if isinstance(given, list):
                view.muted_clients |= {c for c in given if isinstance(c, str) and c}
            view.muted_clients |= self._clients_of(room_id, {key})
            self._remute(room_id)
        elif kind == "closed":
            if view is not None:
                view.closed_by = str(frame.get("reason") or "closed")
            for conn in list(members.values()):
                conn.end(frame)  # the closed frame itself is the last one sent

    def emit_threadsafe(self, room_id: str, frame: dict[str, Any], to: str | None = None) -> None:
        """From a worker thread (consumers, sweeper): broadcast on the event loop."""
        loop = self.loop
        if loop is None or loop.is_closed():
            self.relay(room_id, {**frame, TARGET: to} if to else frame)
            return
        loop.call_soon_threadsafe(self.broadcast, room_id, frame, to)

    def local_threadsafe(self, room_id: str, frame: dict[str, Any]) -> None:
        """From a worker thread: deliver to this process's connections only."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.deliver, room_id, frame, None)

    def relay_threadsafe(self, room_id: str, frame: dict[str, Any]) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.from_relay, room_id, frame)

    def close_all(self) -> None:
        for members in list(self.rooms.values()):
            for conn in list(members.values()):
                conn.end(None)
