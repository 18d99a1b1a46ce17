"""Rooms against hostile clients on the real stack: text that cannot be encoded gets an error
frame with a code (never a dropped socket or a traceback), and one client cannot hold an
unbounded number of sockets."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack

from websockets.sync.client import connect

from tests.integration.test_rooms_live import make_room, member, wait_for, ws_url
from tests.live import Live

SURROGATE_JOIN = '{"type":"join","nickname":"surr","secret":"\\ud800"}'
SURROGATE_IMAGE = '{"type":"image","image_id":"\\ud800","owner_token":"\\ud800"}'


def raw_socket(live: Live, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", live.stack.ports.rooms), 10, (source, 0))


def test_unencodable_text_gets_a_code(live: Live) -> None:
    room = make_room(live)
    with connect(ws_url(live, room), sock=raw_socket(live, "127.0.0.91"), open_timeout=10) as c:
        c.send(SURROGATE_JOIN)  # a lone surrogate, escaped in otherwise valid JSON
        frame = json.loads(c.recv(timeout=10))
        assert frame["type"] == "error" and frame["code"] == "secret_invalid"
    with member(live, room, "ivy", source="127.0.0.92") as (ivy, welcome):
        assert welcome["type"] == "welcome"
        ivy.send(SURROGATE_IMAGE)
        assert wait_for(ivy, "error")["code"] == "image_not_found"
        ivy.send('{"type":"message","text":"\\udfff"}')
        assert wait_for(ivy, "error")["code"] == "invalid_text"
        ivy.send(json.dumps({"type": "message", "text": "still here"}))
        assert wait_for(ivy, "message")["text"] == "still here"
    assert "Traceback" not in (live.stack.var_dir / "logs" / "rooms.log").read_text()


def test_one_client_holds_a_bounded_number_of_sockets(live: Live) -> None:
    room = make_room(live)
    with ExitStack() as held:
        for _ in range(16):
            held.enter_context(
                connect(ws_url(live, room), sock=raw_socket(live, "127.0.0.93"), open_timeout=10)
            )
        with connect(
            ws_url(live, room), sock=raw_socket(live, "127.0.0.93"), open_timeout=10
        ) as extra:
            frame = json.loads(extra.recv(timeout=10))
            assert frame["code"] == "too_many_connections"
        with connect(  # another client is not affected
            ws_url(live, room), sock=raw_socket(live, "127.0.0.94"), open_timeout=10
        ) as other:
            other.send(json.dumps({"type": "join", "nickname": "other"}))
            assert json.loads(other.recv(timeout=10))["type"] == "welcome"
    time.sleep(0.5)  # the server sees the 16 closes
    with member(live, room, "back", source="127.0.0.93") as (back, _):  # freed once closed
        back.send(json.dumps({"type": "message", "text": "hello"}))
        assert wait_for(back, "message")["text"] == "hello"
