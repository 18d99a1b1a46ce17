"""This process's live connections, by room, and frame delivery to them.

Every frame is JSON-encoded once and put on each target connection's bounded queue; one writer
task per connection sends it. Broadcasting never awaits a socket (a slow reader is dropped when
its queue fills) and never waits for the broker: frames for other processes go to the relay's
own thread. Control frames (kicked, closed, muted) also act on the local connections they
name, whichever process they came from."""

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
    """What this process caches of a room doc between refreshes (mutes, end)."""

    slug: str
    expires_at: Any
    muted: set[str] = field(default_factory=set)
    closed_by: str | None = None
    idle_pushed_at: float = 0.0  # when this process last pushed the room's idle deadline


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
        self.views.setdefault(conn.room_id, view)
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
        text = json.dumps(frame, separators=(",", ":"))
        at = time.perf_counter()
        targets = [members[to]] if to is not None and to in members else []
        for conn in targets if to is not None else list(members.values()):
            conn.push(text, at)
        self._apply(room_id, frame, members)

    def _apply(self, room_id: str, frame: dict[str, Any], members: dict[str, Conn]) -> None:
        kind = frame.get("type")
        view = self.views.get(room_id)
        if kind == "kicked":
            conn = members.get(nick_key(str(frame.get("nickname", ""))))
            if conn is not None:
                conn.end(
                    {"type": "error", "code": "kicked", "message": "The room's owner removed you."}
                )
        elif kind == "muted" and view is not None:
            view.muted.add(nick_key(str(frame.get("nickname", ""))))
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
