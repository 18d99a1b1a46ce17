"""A room ends at its chosen time: the sweeper closes it, tells live sockets, deletes its
messages and members at once (not by TTL) and releases the images it kept, whose bytes (GridFS
files and chunks) the links sweeper then deletes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from services.shared import roommod
from tests.integration.links_helpers import cleared_upload, unique_photo
from tests.integration.test_links_sweeper import stored
from tests.integration.test_rooms_live import make_room, member, wait_for
from tests.live import Live


def test_room_expires_and_its_contents_go(live: Live) -> None:
    image_id, token = cleared_upload(live, unique_photo(7010))
    before = live.db.images.find_one({"_id": image_id})
    blob_ids = [str(before["blob_id"]), str(before["thumb_blob_id"])]
    assert stored(live.db, blob_ids)[0] == 2
    room = make_room(live, "short", lifetime_s=4)
    with member(live, room, "brief") as (a, welcome):
        assert welcome["type"] == "welcome"
        a.send(json.dumps({"type": "image", "image_id": image_id, "owner_token": token}))
        shown = wait_for(a, "image")
        a.send(json.dumps({"type": "message", "text": "soon gone"}))
        wait_for(a, "message")
        kept = live.db.images.find_one({"_id": image_id})["kept_until"]
        assert kept is not None
        assert wait_for(a, "closed", timeout=15)["reason"] == "expired"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        doc = live.db[roommod.ROOMS].find_one({"_id": room["room_id"]})
        if doc.get("purged_at") is not None:
            break
        time.sleep(0.2)
    assert doc["closed_by"] == "expired" and doc["purged_at"] is not None
    assert live.db[roommod.MESSAGES].count_documents({"room_id": room["room_id"]}) == 0
    assert live.db[roommod.MEMBERS].count_documents({"room_id": room["room_id"]}) == 0
    image = live.db.images.find_one({"_id": image_id})
    assert image["kept_until"] <= datetime.now(UTC)
    assert live.rooms.get(shown["url"]).status_code in (404, 410)
    # No link ever held it: once the room let go, the sweeper deletes the bytes themselves.
    deadline = time.monotonic() + 15
    while stored(live.db, blob_ids) != (0, 0):
        assert time.monotonic() < deadline, f"bytes still stored: {stored(live.db, blob_ids)}"
        time.sleep(0.3)
    image = live.db.images.find_one({"_id": image_id})
    assert image["purged_at"] is not None and image["blob_id"] is None
    assert live.rooms.get(f"/api/v1/rooms/{room['slug']}").status_code == 410
    listed = {r["slug"] for r in live.rooms.get("/api/v1/rooms").json()["rooms"]}
    assert room["slug"] not in listed


def test_new_joiners_get_only_the_replay_window(live: Live) -> None:
    """Messages older than CHATPIC_ROOMS_REPLAY_WINDOW_S (600 s) are not replayed to a new
    joiner. One of two real messages is moved back in time in the database."""
    room = make_room(live, "replay", lifetime_s=3600)
    with member(live, room, "early") as (a, _):
        for text in ("old news", "fresh news"):
            a.send(json.dumps({"type": "message", "text": text}))
            wait_for(a, "message", text=text)
    messages = live.db[roommod.MESSAGES]
    old = messages.find_one({"room_id": room["room_id"], "text": "old news"})
    assert old is not None, "the message is stored with its text"
    messages.update_one({"_id": old["_id"]}, {"$set": {"at": old["at"] - timedelta(seconds=660)}})
    with member(live, room, "newcomer") as (_, welcome):
        texts = [m.get("text") for m in welcome["history"]]
    assert texts == ["fresh news"]
