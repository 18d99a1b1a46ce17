"""Delivery inside one rooms process, with in-memory twins of sockets and of the relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from services.rooms.background import apply_moderated, refresh_once
from services.rooms.hub import Conn, Hub, RoomView
from services.rooms.relay import _handle
from services.shared.events import (
    ROOM_MODERATED,
    ROOM_RELAY,
    RoomModerated,
    RoomRelay,
    encode,
    make_envelope,
)
from services.shared.repos import now


def in_own_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run on a thread of its own: the browser tests' Playwright keeps a loop in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result(timeout=30)


class FakeSocket:
    def __init__(self, slow: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.slow = slow

    async def send_text(self, text: str) -> None:
        if self.slow:
            await asyncio.sleep(3600)
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000) -> None:
        self.closed = code


def relay_twin() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    out: list[tuple[str, dict[str, Any]]] = []
    return out, lambda room_id, frame: out.append((room_id, frame))


def join(
    hub: Hub,
    room_id: str,
    nickname: str,
    sock: FakeSocket,
    *,
    client: str = "c",
    owner: bool = False,
    conn_id: str | None = None,
) -> Conn:
    """A member's connection in ``hub`` (the tests' one way to make one)."""
    conn = Conn(
        socket=sock,  # type: ignore[arg-type]
        conn_id=conn_id or nickname,
        room_id=room_id,
        slug="s",
        nickname=nickname,
        key=nickname.casefold(),
        tripcode=None,
        client=client,
        queue=hub.new_queue(),
        owner=owner,
    )
    hub.add(conn, RoomView(slug="s", expires_at=None))
    return conn


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_broadcast_reaches_local_sockets_and_the_relay() -> None:
    async def run() -> None:
        relayed, relay = relay_twin()
        hub = Hub("me", relay)
        a, b, other = FakeSocket(), FakeSocket(), FakeSocket()
        join(hub, "r1", "Ann", a)
        join(hub, "r1", "Bo", b)
        join(hub, "r2", "Cy", other)
        hub.broadcast("r1", {"type": "message", "text": "hi"})
        hub.broadcast("r1", {"type": "image_refused", "id": "m1"}, to="bo")
        await settle()
        assert a.sent == [{"type": "message", "text": "hi"}]
        assert b.sent == [{"type": "message", "text": "hi"}, {"type": "image_refused", "id": "m1"}]
        assert other.sent == []
        assert relayed == [
            ("r1", {"type": "message", "text": "hi"}),
            ("r1", {"type": "image_refused", "id": "m1", "_to": "bo"}),
        ]
        # A relayed frame from elsewhere: delivered here, targeted ones to their member only.
        hub.from_relay("r1", {"type": "image_refused", "id": "m2", "_to": "ann"})
        await settle()
        assert a.sent[-1] == {"type": "image_refused", "id": "m2"}
        assert len(b.sent) == 2
        hub.close_all()

    in_own_loop(run())


def test_kick_and_close_act_on_local_connections() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        a, b = FakeSocket(), FakeSocket()
        join(hub, "r1", "Ann", a)
        join(hub, "r1", "Bo", b)
        hub.from_relay("r1", {"type": "kicked", "nickname": "BO"})
        await settle()
        assert b.sent[-1]["code"] == "kicked" and b.closed == 1008
        assert a.sent == [{"type": "kicked", "nickname": "BO"}] and a.closed is None
        hub.deliver("r1", {"type": "muted", "nickname": "Ann"})
        view = hub.view("r1")
        assert view is not None and "ann" in view.muted
        hub.deliver("r1", {"type": "closed", "reason": "owner"})
        await settle()
        assert a.sent[-1] == {"type": "closed", "reason": "owner"} and a.closed == 1000
        assert view.closed_by == "owner"

    in_own_loop(run())


def test_a_slow_reader_is_dropped_without_holding_others_up() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay, queue_size=4)
        slow, fast = FakeSocket(slow=True), FakeSocket()
        s = join(hub, "r1", "Slow", slow)
        join(hub, "r1", "Fast", fast)
        for i in range(10):
            hub.broadcast("r1", {"type": "message", "text": str(i)})
            await settle()
        assert len(fast.sent) == 10
        assert s.ending
        hub.close_all()

    in_own_loop(run())


def test_moderation_events_and_refresh_reach_sockets() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        a = FakeSocket()
        join(hub, "r1", "Ann", a)
        apply_moderated(hub, RoomModerated(room_id="r1", action="remove_message", message_id="m"))
        apply_moderated(hub, RoomModerated(room_id="r1", action="mute", nickname="Ann"))
        apply_moderated(hub, RoomModerated(room_id="r9", action="close"))  # not here: nothing
        await settle()
        assert a.sent == [{"type": "removed", "id": "m"}, {"type": "muted", "nickname": "Ann"}]
        # The refresh repairs lost events from MongoDB's truth.
        room = {"_id": "r1", "closed_at": now(), "closed_by": "moderator", "muted": []}
        refresh_once(hub, [room], [{"_id": "m2", "room_id": "r1"}])
        await settle()
        assert {"type": "closed", "reason": "moderator"} in a.sent

    in_own_loop(run())


def test_relay_records_skip_their_own_origin_and_bad_records() -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    mods: list[RoomModerated] = []

    def on_relay(room_id: str, frame: dict[str, Any]) -> None:
        got.append((room_id, frame))

    def record(origin: str) -> bytes:
        payload = RoomRelay(room_id="r1", origin=origin, frame={"type": "message"})
        return encode(make_envelope(ROOM_RELAY, "r1", payload))

    _handle(record("me"), True, "me", on_relay, mods.append)
    _handle(record("other"), True, "me", on_relay, mods.append)
    _handle(b"not json", True, "me", on_relay, mods.append)
    event = RoomModerated(room_id="r1", action="close")
    _handle(encode(make_envelope(ROOM_MODERATED, "r1", event)), False, "me", on_relay, mods.append)
    assert got == [("r1", {"type": "message"})]
    assert mods == [event]
