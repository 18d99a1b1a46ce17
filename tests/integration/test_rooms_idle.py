"""A room with no message for CHATPIC_ROOMS_IDLE_TTL_S ends, end to end on the real stack: its
members are told live (``closed``, reason ``idle``) and disconnected, new joins are refused,
and the sweeper deletes its messages and members at once.

The test stack keeps the default idle TTL (1800 s; other tests rely on rooms staying open), and
a short lifetime cannot stand in for it (the idle deadline is capped at the room's end, which
then ends it as ``expired``). So time is moved instead: after real messages, the room
document's ``idle_until`` (the deadline each message pushes forward with ``$max``) is set a
second into the past in MongoDB, exactly what 1800 quiet seconds would leave there."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from services.shared import roommod
from tests.integration.faults_helpers import metric_total
from tests.integration.test_rooms_live import closed, make_room, member, wait_for
from tests.live import Live


def purged(live: Live, room_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = dict(live.db[roommod.ROOMS].find_one({"_id": room_id}) or {})
        if doc.get("purged_at") is not None:
            return doc
        assert time.monotonic() < deadline, f"room not purged within {timeout} s: {doc}"
        time.sleep(0.2)


def test_an_idle_room_ends_for_its_members_and_its_messages_go(live: Live) -> None:
    room = make_room(live, "quiet", lifetime_s=3600)
    room_id = room["room_id"]
    ended_before = metric_total(live.rooms, "chatpic_rooms_ended_total", reason="idle")
    with member(live, room, "sleepy") as (a, _), member(live, room, "dozy") as (b, _):
        wait_for(a, "join", nickname="dozy")
        for conn, text in ((a, "anyone here?"), (b, "not for long")):
            conn.send(json.dumps({"type": "message", "text": text}))
            wait_for(a, "message", text=text)
        rooms = live.db[roommod.ROOMS]
        doc = rooms.find_one({"_id": room_id})
        assert doc["idle_until"] > datetime.now(UTC) + timedelta(seconds=60)  # pushed, live
        assert doc["expires_at"] > datetime.now(UTC) + timedelta(minutes=50)
        assert live.db[roommod.MESSAGES].count_documents({"room_id": room_id}) == 2

        # The quiet time passes (see the module docstring).
        past = datetime.now(UTC) - timedelta(seconds=1)
        assert rooms.update_one({"_id": room_id}, {"$set": {"idle_until": past}}).modified_count

        for conn in (a, b):
            assert wait_for(conn, "closed", timeout=15)["reason"] == "idle"
            assert closed(conn)
    doc = purged(live, room_id)
    assert doc["closed_by"] == "idle" and doc["closed_at"] is not None
    assert live.db[roommod.MESSAGES].count_documents({"room_id": room_id}) == 0
    assert live.db[roommod.MEMBERS].count_documents({"room_id": room_id}) == 0
    assert metric_total(live.rooms, "chatpic_rooms_ended_total", reason="idle") >= ended_before + 1

    # Nobody gets in again, nor sees anything of it.
    with member(live, room, "latecomer") as (late, answer):
        assert answer["type"] == "error" and answer["code"] == "room_ended", answer
        assert closed(late)
    info = live.rooms.get(f"/api/v1/rooms/{room['slug']}")
    assert info.status_code == 410 and info.json()["code"] == "room_ended"
    assert live.rooms.get(f"/r/{room['slug']}").status_code == 410
