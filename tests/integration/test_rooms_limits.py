"""The rooms rate limit weighs actions on the real stack: one budget per client, spent by the
cost of each action (services/rooms/ops.py ``charge``), so a join and a photo cost more than a
text message. Measured at the limiter itself (the client's counter in ``rate_limits``) and at
its edge: with too few points left for a join or a photo, a message still goes through while
the join or photo gets ``rate_limited``.

Spending thousands of points for real would take thousands of frames, so the edge cases set the
client's window counter in MongoDB directly, as if the client had spent that much already; the
service then does its ordinary ``$inc`` and comparison on it."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from websockets.sync.client import ClientConnection

from services.rooms.settings import RoomsSettings
from services.shared.clients import client_key
from tests.integration.faults_helpers import metric_total
from tests.integration.links_helpers import unique_photo
from tests.integration.test_rooms_live import Frame, closed, make_room, member, wait_for
from tests.live import Live

MEASURED = "127.0.0.211"  # fresh client addresses: nothing else in the session spends from them
AT_THE_EDGE = "127.0.0.212"
LIMITER = "rooms"  # the RateLimiter's name in services/rooms/ports.py


@pytest.fixture
def settings(live: Live, monkeypatch: pytest.MonkeyPatch) -> RoomsSettings:
    """The settings the stack's rooms service was started with (its environment)."""
    for name in [n for n in os.environ if n.startswith("CHATPIC_")]:
        monkeypatch.delenv(name)
    for name, value in live.stack.service_env().items():
        if name.startswith("CHATPIC_"):
            monkeypatch.setenv(name, value)
    return RoomsSettings()


def key_of(live: Live, source: str) -> str:
    """The rooms-scope client key the service derives from this address."""
    return client_key(live.stack.salt().encode(), source, "rooms")


def spent(live: Live, key: str) -> int:
    """Points counted for the client in every window of this test (the windows are a minute
    long, so a test can straddle two)."""
    docs = live.db.rate_limits.find({"_id": {"$regex": f"^{LIMITER}:{key}:"}})
    return sum(int(d["count"]) for d in docs)


def set_spent(live: Live, key: str, points: int, window_s: int) -> None:
    """As if the client had spent ``points`` in this window already (and in the next one, so
    a window boundary during the test changes nothing)."""
    window = int(time.time() // window_s)
    for w in (window, window + 1):
        ends = datetime.fromtimestamp((w + 1) * window_s, UTC) + timedelta(seconds=60)
        live.db.rate_limits.update_one(
            {"_id": f"{LIMITER}:{key}:{w}"},
            {"$set": {"count": points, "expires_at": ends}},
            upsert=True,
        )


def send(conn: ClientConnection, frame: Frame) -> None:
    conn.send(json.dumps(frame))


def test_each_action_spends_its_own_weight_at_the_limiter(
    live: Live, settings: RoomsSettings
) -> None:
    costs = settings.rooms_join_cost, settings.rooms_message_cost, settings.rooms_image_cost
    join_cost, message_cost, image_cost = costs
    assert join_cost > message_cost and image_cost > message_cost, costs
    upload = live.upload(unique_photo(7611), "weights.jpg").json()
    key = key_of(live, MEASURED)
    room = make_room(live)
    assert spent(live, key) == 0
    with member(live, room, "weigher", source=MEASURED) as (conn, welcome):
        assert welcome["type"] == "welcome"
        assert spent(live, key) == join_cost
        send(conn, {"type": "message", "text": "one point"})
        wait_for(conn, "message", text="one point")
        assert spent(live, key) == join_cost + message_cost
        image = {"type": "image", **{k: upload[k] for k in ("image_id", "owner_token")}}
        send(conn, image)
        wait_for(conn, "image_pending")
        assert spent(live, key) == join_cost + message_cost + image_cost


def test_a_message_fits_where_a_join_or_a_photo_does_not(
    live: Live, settings: RoomsSettings
) -> None:
    limit, window_s = settings.rooms_rate_limit, settings.rooms_rate_window_s
    join_cost, message_cost = settings.rooms_join_cost, settings.rooms_message_cost
    image_cost = settings.rooms_image_cost
    assert limit == int(live.stack.extra_env["CHATPIC_ROOMS_RATE_LIMIT"])
    upload = live.upload(unique_photo(7612), "edge.jpg").json()
    image = {"type": "image", **{k: upload[k] for k in ("image_id", "owner_token")}}
    key = key_of(live, AT_THE_EDGE)
    room = make_room(live)
    refused_before = {
        a: metric_total(live.rooms, "chatpic_rooms_rate_limited_total", action=a)
        for a in ("join", "image", "message")
    }
    with member(live, room, "edgy", source=AT_THE_EDGE) as (conn, welcome):
        assert welcome["type"] == "welcome"

        # Fewer points left than a join costs, enough for a message.
        set_spent(live, key, limit - (join_cost - 1), window_s)
        send(conn, {"type": "message", "text": "still fits"})
        wait_for(conn, "message", text="still fits")
        set_spent(live, key, limit - (join_cost - 1), window_s)
        with member(live, room, "edgy2", source=AT_THE_EDGE) as (second, answer):
            assert answer["type"] == "error" and answer["code"] == "rate_limited", answer
            assert answer["retry_after"] >= 1
            assert closed(second)  # a refused join ends the socket
        # Exactly a join's worth left: it fits.
        set_spent(live, key, limit - join_cost, window_s)
        with member(live, room, "edgy3", source=AT_THE_EDGE) as (_, answer):
            assert answer["type"] == "welcome", answer

        # Fewer points left than a photo costs, enough for a message.
        set_spent(live, key, limit - (image_cost - 1), window_s)
        send(conn, {"type": "message", "text": "fits too"})
        wait_for(conn, "message", text="fits too")
        set_spent(live, key, limit - (image_cost - 1), window_s)
        send(conn, image)
        refused = wait_for(conn, "error")
        assert refused["code"] == "rate_limited" and refused["retry_after"] >= 1
        send(conn, {"type": "ping"})
        wait_for(conn, "pong")  # a refused photo keeps the socket open
        assert live.db.room_messages.count_documents({"image_id": upload["image_id"]}) == 0
        # Exactly a photo's worth left: it fits.
        set_spent(live, key, limit - image_cost, window_s)
        send(conn, image)
        wait_for(conn, "image_pending")

        # And a message needs its own point: none left, refused.
        set_spent(live, key, limit - message_cost, window_s)
        send(conn, {"type": "message", "text": "last one"})
        wait_for(conn, "message", text="last one")
        send(conn, {"type": "message", "text": "over"})
        assert wait_for(conn, "error")["code"] == "rate_limited"

    moved = {
        a: metric_total(live.rooms, "chatpic_rooms_rate_limited_total", action=a) - before
        for a, before in refused_before.items()
    }
    assert moved == {"join": 1, "image": 1, "message": 1}, moved
