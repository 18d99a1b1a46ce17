"""On the real stack: a kick ends the member's sockets and bars its client from rejoining under
another nickname, a mute follows the client to its new nicknames (not to others already there
from its address), photos that stop being cleared leave the room (once), and a removal reaches
each socket once."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.sync.client import ClientConnection

from services.shared import roommod
from services.shared.events import RoomModerated
from tests.integration.links_helpers import cleared_upload, unique_photo
from tests.integration.test_rooms_live import (
    closed,
    make_room,
    member,
    publish_moderated,
    wait_for,
)
from tests.live import Live

Frame = dict[str, Any]


def frames_for(conn: ClientConnection, seconds: float) -> list[Frame]:
    """Every frame the socket gets in the next ``seconds``."""
    out: list[Frame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(json.loads(conn.recv(left)))
        except TimeoutError:
            break
    return out


def test_a_kick_ends_the_member_and_bars_its_client(live: Live) -> None:
    room = make_room(live)
    owner = {"Authorization": f"Bearer {room['owner_token']}"}
    with (
        member(live, room, "keeper", source="127.0.0.161") as (keeper, _),
        member(live, room, "troll", source="127.0.0.162") as (troll, _),
        member(live, room, "flatmate", source="127.0.0.162") as (flatmate, _),
    ):
        wait_for(keeper, "join", nickname="flatmate")
        resp = live.rooms.post(
            f"/api/v1/rooms/{room['slug']}/kick", json={"nickname": "troll"}, headers=owner
        )
        assert resp.status_code == 200, resp.text
        assert wait_for(troll, "error")["code"] == "kicked"
        assert closed(troll)
        kicked = wait_for(keeper, "kicked", nickname="troll")
        assert set(kicked) == {"type", "nickname"}  # no client key for browsers
        wait_for(flatmate, "kicked", nickname="troll")
        flatmate.send(json.dumps({"type": "message", "text": "not me"}))
        wait_for(keeper, "message", text="not me")  # same address, other member: stays
        with member(live, room, "troll2", source="127.0.0.162") as (again, answer):
            assert answer["code"] == "kicked"  # no way back under a new nickname
            assert closed(again)
        keeper.send(json.dumps({"type": "message", "text": "still here"}))
        wait_for(keeper, "message", text="still here")


def test_a_mute_follows_the_client_to_new_nicknames(live: Live) -> None:
    room = make_room(live)
    with (
        member(live, room, "reader", source="127.0.0.163") as (reader, _),
        member(live, room, "rude", source="127.0.0.164") as (rude, _),
        member(live, room, "flatmate", source="127.0.0.164") as (flatmate, _),
    ):
        wait_for(reader, "join", nickname="flatmate")
        assert roommod.mute_nickname(live.db, room["room_id"], "rude")
        publish_moderated(
            live, RoomModerated(room_id=room["room_id"], action="mute", nickname="rude")
        )
        muted = wait_for(reader, "muted", nickname="rude")
        assert set(muted) == {"type", "nickname"}
        time.sleep(0.5)
        rude.send(json.dumps({"type": "message", "text": "again"}))
        assert wait_for(rude, "error")["code"] == "muted"
        flatmate.send(json.dumps({"type": "message", "text": "not muted"}))
        wait_for(flatmate, "message", text="not muted")
        doc = live.db[roommod.ROOMS].find_one({"_id": room["room_id"]})
        assert len(doc.get("muted_clients") or []) == 1
        with member(live, room, "rude3", source="127.0.0.164") as (rude3, welcome):
            assert welcome["type"] == "welcome"
            rude3.send(json.dumps({"type": "message", "text": "new name"}))
            assert wait_for(rude3, "error")["code"] == "muted"
        reader.send(json.dumps({"type": "message", "text": "fine"}))
        wait_for(reader, "message", text="fine")


def test_a_mute_whose_event_was_lost_still_follows_the_client(live: Live) -> None:
    room = make_room(live)
    with member(live, room, "sly", source="127.0.0.165") as (_, _):
        assert roommod.mute_nickname(live.db, room["room_id"], "sly")  # no event published
        deadline = time.monotonic() + 15
        while True:
            doc = live.db[roommod.ROOMS].find_one({"_id": room["room_id"]})
            if doc.get("muted_clients"):
                break
            assert time.monotonic() < deadline, "the refresh never recorded the client"
            time.sleep(0.3)
        with member(live, room, "sly2", source="127.0.0.165") as (sly2, welcome):
            assert welcome["type"] == "welcome"
            sly2.send(json.dumps({"type": "message", "text": "evading"}))
            assert wait_for(sly2, "error")["code"] == "muted"


def post_image(live: Live, conn: ClientConnection, seed: int) -> tuple[str, Frame]:
    image_id, token = cleared_upload(live, unique_photo(seed))
    conn.send(json.dumps({"type": "image", "image_id": image_id, "owner_token": token}))
    pending = wait_for(conn, "image_pending")
    shown = wait_for(conn, "image", timeout=60, id=pending["id"])
    return image_id, shown


def test_photos_no_longer_cleared_leave_the_room_once(live: Live) -> None:
    room = make_room(live)
    with (
        member(live, room, "poster", source="127.0.0.166") as (poster, _),
        member(live, room, "viewer", source="127.0.0.167") as (viewer, _),
    ):
        deleted_id, deleted = post_image(live, poster, 7101)
        held_id, held = post_image(live, poster, 7102)
        kept_id, kept = post_image(live, poster, 7103)
        for shown in (deleted, held, kept):
            wait_for(viewer, "image", timeout=30, id=shown["id"])
        assert live.rooms.get(deleted["url"]).status_code == 200
        # (a) the owner deleted it everywhere, (b) reports hid it for review.
        live.db.images.update_one({"_id": deleted_id}, {"$set": {"status": "deleted"}})
        live.db.images.update_one({"_id": held_id}, {"$set": {"status": "review"}})
        got = frames_for(viewer, 8)  # several refresh passes
        removed = [f["id"] for f in got if f.get("type") == "removed"]
        assert sorted(removed) == sorted([deleted["id"], held["id"]])  # each exactly once
        poster_removed = [f["id"] for f in frames_for(poster, 0.5) if f.get("type") == "removed"]
        assert sorted(poster_removed) == sorted(removed)
        for shown in (deleted, held):
            msg = live.db[roommod.MESSAGES].find_one({"_id": shown["id"]})
            assert msg["state"] == roommod.REMOVED
            assert msg["removed_by"] == roommod.BY_IMAGE_STATUS
            assert live.rooms.get(shown["url"]).status_code != 200
        assert live.rooms.get(kept["url"]).status_code == 200
        with member(live, room, "late", source="127.0.0.168") as (_, welcome):
            ids = {m["id"] for m in welcome["history"]}
            assert kept["id"] in ids
            assert deleted["id"] not in ids and held["id"] not in ids
        assert live.db.images.find_one({"_id": kept_id})["status"] == "cleared"


def test_a_removal_reaches_each_socket_once(live: Live) -> None:
    room = make_room(live)
    with (
        member(live, room, "talker", source="127.0.0.169") as (talker, _),
        member(live, room, "listener", source="127.0.0.170") as (listener, _),
    ):
        talker.send(json.dumps({"type": "message", "text": "to be removed"}))
        said = wait_for(listener, "message", text="to be removed")
        assert roommod.remove_message(live.db, said["id"], by="reviewer", reason="test")
        publish_moderated(
            live,
            RoomModerated(room_id=room["room_id"], action="remove_message", message_id=said["id"]),
        )
        for conn in (listener, talker):
            got = frames_for(conn, 6)  # the event plus several refresh passes
            assert [f for f in got if f.get("type") == "removed"] == [
                {"type": "removed", "id": said["id"]}
            ]
