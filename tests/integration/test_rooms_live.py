"""Rooms on the real stack: joins, live messages, nickname rules, listing, rate limits, images
scanned before they show, moderation reaching live sockets, the owner's kick and close."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from services.shared import roommod
from services.shared.events import ROOM_MODERATED, RoomModerated, make_envelope
from services.shared.kafka import KafkaPublisher
from services.shared.settings import CommonSettings
from tests.integration.links_helpers import cleared_upload, unique_photo
from tests.live import Live

Frame = dict[str, Any]


def make_room(live: Live, name: str = "test room", public: bool = False, **extra: Any) -> Frame:
    body = {"name": name, "public": public, "lifetime_s": 3600, **extra}
    resp = live.rooms.post("/api/v1/rooms", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def ws_url(live: Live, room: Frame) -> str:
    return f"ws://127.0.0.1:{live.stack.ports.rooms}/api/v1/rooms/{room['slug']}/ws"


@contextmanager
def member(
    live: Live, room: Frame, nickname: str, secret: str | None = None, source: str | None = None
) -> Iterator[tuple[ClientConnection, Frame]]:
    """A joined connection (from ``source``, another loopback address, if given) and the
    first frame the server answered (welcome, or an error)."""
    sock = None
    if source is not None:
        sock = socket.create_connection(("127.0.0.1", live.stack.ports.rooms), 10, (source, 0))
    with connect(ws_url(live, room), sock=sock, open_timeout=10) as conn:
        join: Frame = {"type": "join", "nickname": nickname}
        if secret is not None:
            join["secret"] = secret
        conn.send(json.dumps(join))
        yield conn, json.loads(conn.recv(10))


def wait_for(conn: ClientConnection, kind: str, timeout: float = 10, **match: Any) -> Frame:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} frame {match} within {timeout} s"
        frame: Frame = json.loads(conn.recv(left))
        if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
            return frame


def closed(conn: ClientConnection, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            conn.recv(deadline - time.monotonic())
    except (ConnectionClosed, TimeoutError):
        return True
    return False


def test_two_members_see_each_others_messages(live: Live) -> None:
    room = make_room(live)
    assert len(room["slug"]) >= 22 and room["owner_token"]
    with member(live, room, "Alice", secret="correct horse") as (a, wa):
        assert wa["type"] == "welcome" and wa["you"]["nickname"] == "Alice"
        trip = wa["you"]["tripcode"]
        assert trip and len(trip) == 8
        with member(live, room, "bob") as (b, wb):
            assert wb["type"] == "welcome"
            assert {"nickname": "Alice", "tripcode": trip} in wb["members"]
            wait_for(a, "join", nickname="bob")
            a.send(json.dumps({"type": "message", "text": "  hello bob  "}))
            got_b = wait_for(b, "message")
            got_a = wait_for(a, "message")
            assert got_a == got_b
            assert got_b["text"] == "hello bob" and got_b["tripcode"] == trip
            b.send(json.dumps({"type": "message", "text": "hi alice"}))
            assert wait_for(a, "message")["text"] == "hi alice"
            stored = live.db[roommod.MESSAGES].find_one({"_id": got_b["id"]})
            assert stored["state"] == "visible" and stored["room_id"] == room["room_id"]
            # Refusals that keep the socket open.
            b.send(json.dumps({"type": "message", "text": "x" * 501}))
            assert wait_for(b, "error")["code"] == "message_too_long"
            b.send(json.dumps({"type": "message", "text": "   "}))
            assert wait_for(b, "error")["code"] == "message_empty"
            b.send("{not json")
            assert wait_for(b, "error")["code"] == "malformed_frame"
            b.send(json.dumps({"type": "message", "text": "y" * 20000}))
            assert wait_for(b, "error")["code"] == "frame_too_large"
            b.send(json.dumps({"type": "ping"}))
            wait_for(b, "pong")
        wait_for(a, "leave", nickname="bob")
    # The same secret gives the same tripcode later, in another room.
    with member(live, make_room(live), "alice2", secret="correct horse") as (_, w):
        assert w["you"]["tripcode"] == trip
    # History: a new joiner gets the recent visible messages.
    with member(live, room, "carol") as (_, wc):
        assert [m["text"] for m in wc["history"]] == ["hello bob", "hi alice"]


def test_nickname_unique_regardless_of_case(live: Live) -> None:
    room = make_room(live)
    with member(live, room, "Dana") as (_, first):
        assert first["type"] == "welcome"
        with member(live, room, "dANA") as (second, answer):
            assert answer["type"] == "error" and answer["code"] == "nickname_taken"
            # The socket stays open for another try.
            second.send(json.dumps({"type": "join", "nickname": "  "}))
            assert json.loads(second.recv(10))["code"] == "nickname_invalid"
            second.send(json.dumps({"type": "join", "nickname": "Dana 2"}))
            assert json.loads(second.recv(10))["type"] == "welcome"
    with member(live, room, "dana") as (_, again):  # free again once Dana left
        assert again["type"] == "welcome"


def test_private_rooms_are_not_listed(live: Live) -> None:
    private = make_room(live, "secret club", public=False)
    public = make_room(live, "open lounge", public=True)
    listed = {r["slug"] for r in live.rooms.get("/api/v1/rooms").json()["rooms"]}
    assert public["slug"] in listed and private["slug"] not in listed
    assert "open lounge" in live.rooms.get("/rooms").text
    assert private["slug"] not in live.rooms.get("/").text
    info = live.rooms.get(f"/api/v1/rooms/{private['slug']}").json()
    assert info["name"] == "secret club" and info["public"] is False
    missing = live.rooms.get("/api/v1/rooms/nope-not-a-room")
    assert missing.status_code == 404 and missing.json()["code"] == "room_not_found"
    bad = live.rooms.post("/api/v1/rooms", json={"name": "", "lifetime_s": 3600})
    assert bad.status_code == 422 and bad.json()["code"] == "name_invalid"
    bad = live.rooms.post("/api/v1/rooms", json={"name": "x", "lifetime_s": 10**9})
    assert bad.status_code == 422 and bad.json()["code"] == "lifetime_invalid"


def test_rate_limit_refuses_over_http_and_on_the_socket(live: Live) -> None:
    source = "127.0.0.77"
    room = make_room(live)
    other = httpx.Client(
        base_url=str(live.rooms.base_url),
        transport=httpx.HTTPTransport(local_address=source),
        timeout=30,
    )
    with other, member(live, room, "flooder", source=source) as (conn, welcome):
        assert welcome["type"] == "welcome"
        for _ in range(400):
            resp = other.post("/api/v1/rooms", json={"name": "spam", "lifetime_s": 3600})
            if resp.status_code == 429:
                break
        assert resp.status_code == 429 and resp.json()["code"] == "rate_limited"
        assert int(resp.headers["retry-after"]) >= 1
        conn.send(json.dumps({"type": "message", "text": "one more"}))
        refused = wait_for(conn, "error")
        assert refused["code"] == "rate_limited" and refused["retry_after"] >= 1
        conn.send(json.dumps({"type": "ping"}))
        wait_for(conn, "pong")  # still open: a recoverable refusal
        with member(live, room, "flooder2", source=source) as (second, answer):
            assert answer["code"] == "rate_limited"
            assert closed(second)
    # Everyone else is unaffected.
    with member(live, room, "bystander") as (_, w):
        assert w["type"] == "welcome"


def test_image_is_scanned_before_anyone_sees_it(live: Live) -> None:
    cors = live.ingest.options(
        "/api/v1/images",
        headers={
            "Origin": f"http://127.0.0.1:{live.stack.ports.rooms}",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert cors.headers["access-control-allow-origin"] == (
        f"http://127.0.0.1:{live.stack.ports.rooms}"
    )
    assert "access-control-allow-credentials" not in cors.headers
    foreign = live.ingest.options(
        "/api/v1/images",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in foreign.headers
    room = make_room(live)
    upload = live.upload(unique_photo(7007), "room.jpg").json()
    with member(live, room, "poster") as (a, _), member(live, room, "viewer") as (b, _):
        a.send(json.dumps({"type": "image", "image_id": upload["image_id"], "owner_token": "x"}))
        assert wait_for(a, "error")["code"] == "image_not_found"
        a.send(
            json.dumps(
                {
                    "type": "image",
                    "image_id": upload["image_id"],
                    "owner_token": upload["owner_token"],
                }
            )
        )
        pending = wait_for(a, "image_pending")
        shown_b = wait_for(b, "image", timeout=60, id=pending["id"])
        shown_a = wait_for(a, "image", timeout=60, id=pending["id"])
        assert shown_a == shown_b and shown_b["nickname"] == "poster"
        image = live.rooms.get(shown_b["url"])
        assert image.status_code == 200, image.text
        assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
        assert image.headers["cache-control"] == "private, max-age=60"
        assert image.headers["x-content-type-options"] == "nosniff"
        assert live.rooms.get(shown_b["thumb_url"]).status_code == 200
        doc = live.db.images.find_one({"_id": upload["image_id"]})
        assert doc["status"] == "cleared" and doc["kept_until"] is not None
        # One room per image.
        with member(live, make_room(live), "elsewhere") as (c, _):
            c.send(
                json.dumps(
                    {
                        "type": "image",
                        "image_id": upload["image_id"],
                        "owner_token": upload["owner_token"],
                    }
                )
            )
            assert wait_for(c, "error")["code"] == "image_in_other_room"
        # Reports of a photo go to the image reports queue (not to the Rooms queue).
        url = f"/api/v1/rooms/{room['slug']}/messages/{pending['id']}/report"
        resp = live.rooms.post(url, json={"reason": "spam", "details": "test"})
        assert resp.status_code == 201, resp.text
        assert live.db[roommod.REPORTS].find_one({"message_id": pending["id"]}) is None
        assert live.db.reports.find_one({"image_id": upload["image_id"]}) is not None
        bad = live.rooms.post(url, json={"reason": "nonsense"})
        assert bad.status_code == 422


def publish_moderated(live: Live, payload: RoomModerated) -> None:
    publisher = KafkaPublisher(CommonSettings(kafka_bootstrap=live.bootstrap))
    try:
        publisher.publish(
            ROOM_MODERATED.topic, make_envelope(ROOM_MODERATED, payload.room_id, payload)
        )
    finally:
        publisher.close()


def test_reviewer_removal_and_mute_reach_live_sockets(live: Live) -> None:
    room = make_room(live)
    with member(live, room, "rude") as (a, _), member(live, room, "reader") as (b, _):
        a.send(json.dumps({"type": "message", "text": "something nasty"}))
        said = wait_for(b, "message")
        url = f"/api/v1/rooms/{room['slug']}/messages/{said['id']}/report"
        assert live.rooms.post(url, json={"reason": "harassment"}).status_code == 201
        assert roommod.remove_message(live.db, said["id"], by="reviewer", reason="rude")
        publish_moderated(
            live,
            RoomModerated(room_id=room["room_id"], action="remove_message", message_id=said["id"]),
        )
        assert wait_for(b, "removed", id=said["id"])["id"] == said["id"]
        assert wait_for(a, "removed", id=said["id"])
        assert roommod.mute_nickname(live.db, room["room_id"], "RUDE")
        publish_moderated(
            live, RoomModerated(room_id=room["room_id"], action="mute", nickname="rude")
        )
        wait_for(b, "muted", nickname="rude")
        time.sleep(0.5)
        a.send(json.dumps({"type": "message", "text": "again"}))
        assert wait_for(a, "error")["code"] == "muted"
    with member(live, room, "late") as (_, w):
        assert all(m["id"] != said["id"] for m in w["history"])


def test_owner_kicks_and_closes(live: Live) -> None:
    room = make_room(live)
    owner = {"Authorization": f"Bearer {room['owner_token']}"}
    base = f"/api/v1/rooms/{room['slug']}"
    with member(live, room, "keeper") as (a, _):
        # Another address: a kick ends the kicked member's sockets and bars its address.
        with member(live, room, "pest", source="127.0.0.171") as (b, _):
            wait_for(a, "join", nickname="pest")
            wrong = live.rooms.post(
                f"{base}/kick", json={"nickname": "pest"}, headers={"Authorization": "Bearer no"}
            )
            assert wrong.status_code == 403 and wrong.json()["code"] == "owner_key_invalid"
            assert live.rooms.post(f"{base}/kick", json={"nickname": "pest"}).status_code == 403
            resp = live.rooms.post(f"{base}/kick", json={"nickname": "PEST"}, headers=owner)
            assert resp.status_code == 200, resp.text
            assert wait_for(b, "error")["code"] == "kicked"
            assert closed(b)
            wait_for(a, "kicked", nickname="pest")
        with member(live, room, "pest", source="127.0.0.171") as (c, answer):  # barred a while
            assert answer["code"] == "kicked"
            assert closed(c)
        a.send(json.dumps({"type": "message", "text": "bye"}))
        wait_for(a, "message")
        assert live.rooms.post(f"{base}/close", headers=owner).status_code == 200
        assert wait_for(a, "closed")["reason"] == "owner"
        assert closed(a)
    gone = live.rooms.get(base)
    assert gone.status_code == 410 and gone.json()["code"] == "room_ended"
    assert live.rooms.get(f"/r/{room['slug']}").status_code == 410
    assert live.db[roommod.MESSAGES].count_documents({"room_id": room["room_id"]}) == 0
    assert live.db[roommod.MEMBERS].count_documents({"room_id": room["room_id"]}) == 0


def test_pages(live: Live) -> None:
    made = live.rooms.post(
        "/rooms/new", data={"name": "from the form", "lifetime_s": "3600"}, follow_redirects=False
    )
    assert made.status_code == 303
    location = made.headers["location"]
    assert location.startswith("/r/") and "#owner=" in location
    page = live.rooms.get(location.split("#")[0])
    assert page.status_code == 200 and "from the form" in page.text
    assert "Rooms need JavaScript" in page.text and '"/rooms/static/rooms.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "set-cookie" not in page.headers
    # Under /rooms/static: on one public host /static is ingest's.
    script = live.rooms.get("/rooms/static/rooms.js")
    assert script.status_code == 200 and "/api/v1/rooms/" in script.text
    assert '"/rooms/static/rooms.css"' in page.text
    assert live.rooms.get("/rooms/static/rooms.css").status_code == 200
    assert live.rooms.get("/static/rooms.js").status_code == 404
    assert live.rooms.get("/r/not-a-room").status_code == 404


def test_image_already_cleared_is_shown_at_once(live: Live) -> None:
    image_id, token = cleared_upload(live, unique_photo(7008))
    room = make_room(live)
    with member(live, room, "quick") as (a, _):
        a.send(json.dumps({"type": "image", "image_id": image_id, "owner_token": token}))
        pending = wait_for(a, "image_pending")
        wait_for(a, "image", id=pending["id"])
