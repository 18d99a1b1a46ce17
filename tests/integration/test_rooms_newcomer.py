"""On the real stack, a newcomer's findings: an owner kicking or a moderator muting someone
behind the owner's address (family NAT, an office) leaves the owner (and others there) alone,
while the kicked person cannot come back under a new nickname without the owner key; a refused
join can be retried on the same socket, garbage before a join is cut off; text that is not
UTF-8 is refused with a code; bad room names get their own code."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from services.shared import roommod
from services.shared.events import RoomModerated
from tests.integration.test_rooms_live import (
    closed,
    make_room,
    publish_moderated,
    wait_for,
    ws_url,
)
from tests.live import Live

Frame = dict[str, Any]


def open_socket(live: Live, room: Frame, source: str) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", live.stack.ports.rooms), 10, (source, 0))
    return connect(ws_url(live, room), sock=sock, open_timeout=10)


def send_join(conn: ClientConnection, nickname: str, **extra: Any) -> Frame:
    conn.send(json.dumps({"type": "join", "nickname": nickname, **extra}))
    return dict(json.loads(conn.recv(10)))


@contextmanager
def joined(
    live: Live, room: Frame, nickname: str, source: str, **extra: Any
) -> Iterator[tuple[ClientConnection, Frame]]:
    with open_socket(live, room, source) as conn:
        yield conn, send_join(conn, nickname, **extra)


def say_and_hear(conn: ClientConnection, text: str) -> None:
    conn.send(json.dumps({"type": "message", "text": text}))
    wait_for(conn, "message", text=text)


def test_an_owner_kicking_someone_behind_the_same_address_stays(live: Live) -> None:
    room = make_room(live)
    key = room["owner_token"]
    owner_auth = {"Authorization": f"Bearer {key}"}
    base = f"/api/v1/rooms/{room['slug']}"
    home = "127.0.0.185"
    with (
        joined(live, room, "Owner", home, owner_key=key) as (own, w_own),
        joined(live, room, "Keeper", home) as (keeper, _),
        joined(live, room, "Sibling", home) as (sib, w_sib),
    ):
        assert w_own["type"] == w_sib["type"] == "welcome"
        wait_for(own, "join", nickname="Sibling")
        resp = live.rooms.post(f"{base}/kick", json={"nickname": "Sibling"}, headers=owner_auth)
        assert resp.status_code == 200, resp.text
        assert wait_for(sib, "error")["code"] == "kicked"
        assert closed(sib)
        # The owner (and the other person at that address) saw the kick and stay connected.
        assert wait_for(own, "kicked", nickname="Sibling") == {
            "type": "kicked",
            "nickname": "Sibling",
        }
        wait_for(keeper, "kicked", nickname="Sibling")
        say_and_hear(own, "still the owner here")
        wait_for(keeper, "message", text="still the owner here")
        say_and_hear(keeper, "me too")
        # The kicked person cannot come straight back under a new nickname...
        with joined(live, room, "Totally New", home) as (again, answer):
            assert answer["type"] == "error" and answer["code"] == "kicked"
            assert closed(again)
        with joined(live, room, "Guessing", home, owner_key="not-the-key") as (g, answer):
            assert answer["code"] == "kicked"
            assert closed(g)
        # ...while the owner's own new tab (proving the key) gets in.
        with joined(live, room, "Owner tab 2", home, owner_key=key) as (tab2, answer):
            assert answer["type"] == "welcome"
            say_and_hear(tab2, "second tab")
        assert w_own.get("owner") is True and w_sib.get("owner") is False
        # The owner cannot be kicked, and a kick aimed at the owner says so.
        resp = live.rooms.post(f"{base}/kick", json={"nickname": "owner"}, headers=owner_auth)
        assert resp.status_code == 409 and resp.json()["code"] == "owner_not_kickable"
        say_and_hear(own, "after all that")
        # Someone from another address is not affected.
        with joined(live, room, "Guest", "127.0.0.186") as (_, answer):
            assert answer["type"] == "welcome"
    doc = live.db[roommod.ROOMS].find_one({"_id": room["room_id"]})
    assert len(doc["kicked"]) == 1  # one ban, for the address


def test_a_mute_spares_the_owner_and_others_already_behind_the_address(live: Live) -> None:
    room = make_room(live)
    key = room["owner_token"]
    office = "127.0.0.187"
    with (
        joined(live, room, "Boss", office, owner_key=key) as (boss, _),
        joined(live, room, "Colleague", office) as (colleague, _),
        joined(live, room, "Rude", office) as (rude, _),
    ):
        wait_for(boss, "join", nickname="Rude")
        assert roommod.mute_nickname(live.db, room["room_id"], "Rude")
        publish_moderated(
            live, RoomModerated(room_id=room["room_id"], action="mute", nickname="Rude")
        )
        wait_for(boss, "muted", nickname="Rude")
        wait_for(colleague, "muted", nickname="Rude")
        rude.send(json.dumps({"type": "message", "text": "still rude"}))
        assert wait_for(rude, "error")["code"] == "muted"
        say_and_hear(boss, "the owner still talks")
        say_and_hear(colleague, "so do I")
        # A new nickname from the muted member's address is muted; the owner's new tab is not.
        with joined(live, room, "Polite Now", office) as (renamed, answer):
            assert answer["type"] == "welcome"
            renamed.send(json.dumps({"type": "message", "text": "new name"}))
            assert wait_for(renamed, "error")["code"] == "muted"
        with joined(live, room, "Boss tab", office, owner_key=key) as (tab, answer):
            assert answer["type"] == "welcome"
            say_and_hear(tab, "owner tab talks")


def test_a_refused_join_can_be_retried_on_the_same_socket(live: Live) -> None:
    room = make_room(live)
    with joined(live, room, "Dana", "127.0.0.188") as (_, first):
        assert first["type"] == "welcome"
        with open_socket(live, room, "127.0.0.189") as conn:
            assert send_join(conn, "dANA")["code"] == "nickname_taken"
            assert send_join(conn, "  ")["code"] == "nickname_invalid"
            conn.send("{not json")
            assert json.loads(conn.recv(10))["code"] == "malformed_frame"
            welcome = send_join(conn, "Dana two")
            assert welcome["type"] == "welcome" and welcome["you"]["nickname"] == "Dana two"
            say_and_hear(conn, "made it")


def test_garbage_before_a_join_is_cut_off_after_a_few_errors(live: Live) -> None:
    room = make_room(live)
    with open_socket(live, room, "127.0.0.190") as conn:
        codes = []
        for _ in range(5):
            conn.send("garbage")
            codes.append(json.loads(conn.recv(10))["code"])
        assert codes == ["malformed_frame"] * 5
        with pytest.raises(ConnectionClosed) as gone:
            conn.recv(10)
        assert gone.value.rcvd is not None and gone.value.rcvd.code == 1008
    # A room that does not exist still closes at once.
    with open_socket(live, {"slug": "no-such-room"}, "127.0.0.190") as conn:
        assert send_join(conn, "someone")["code"] == "room_not_found"
        assert closed(conn)


def test_text_that_is_not_utf8_is_refused(live: Live) -> None:
    before = live.db[roommod.ROOMS].count_documents({"name": {"$regex": "\ufffd"}})
    form = live.rooms.post(
        "/rooms/new",
        content=b"name=%ED%A0%80%FF&public=1&lifetime_s=3600",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert form.status_code == 400 and "text/html" in form.headers["content-type"]
    assert "invalid_text" in form.text
    after = live.db[roommod.ROOMS].count_documents({"name": {"$regex": "\ufffd"}})
    assert after == before
    ok = live.rooms.post(
        "/rooms/new",
        data={"name": "Café ☕", "lifetime_s": "3600", "public": "1"},
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    slug = ok.headers["location"].split("/r/")[1].split("#")[0]
    assert live.db[roommod.ROOMS].find_one({"slug": slug})["name"] == "Café ☕"
    # Lone surrogates in a message get a precise code, and the socket stays usable.
    room = make_room(live)
    with joined(live, room, "ivy", "127.0.0.191") as (ivy, _):
        ivy.send('{"type":"message","text":"hi \\udfff"}')
        err = wait_for(ivy, "error")
        assert err["code"] == "invalid_text" and "surrogate" in err["message"]
        say_and_hear(ivy, "fine text")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x" * 300, "lifetime_s": 3600}, "name_invalid"),
        ({"name": 5, "lifetime_s": 3600}, "name_invalid"),
        ({"lifetime_s": 3600}, "name_invalid"),
        ({"name": "ok", "lifetime_s": "soon"}, "lifetime_invalid"),
        ({"name": "ok"}, "lifetime_invalid"),
    ],
)
def test_bad_room_names_get_their_own_code(live: Live, body: Frame, code: str) -> None:
    resp = live.rooms.post("/api/v1/rooms", json=body)
    assert resp.status_code == 422 and resp.json()["code"] == code, resp.text
