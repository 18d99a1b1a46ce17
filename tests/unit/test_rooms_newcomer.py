"""A newcomer's findings: people behind one address (family NAT, an office) are not kicked or
muted with the member a kick or mute aims at, and never the owner; a join proving the owner key
gets past a kick of its address; refusals before a join leave the socket usable; lone
surrogates in messages get a precise code; forms refuse bytes that are not UTF-8."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.rooms import moderation, ops
from services.rooms.background import apply_moderated, mute_member_clients
from services.rooms.domain import FrameError
from services.rooms.hub import Conn, Hub
from services.rooms.settings import RoomsSettings
from services.shared.errors import DomainError
from services.shared.events import RoomModerated
from services.shared.ratelimit import Allowance
from services.shared.tokens import token_hash
from tests.unit.test_rooms_hub import FakeSocket, in_own_loop, relay_twin, settle
from tests.unit.test_rooms_hub import join as hub_join

SALT = b"salt"
OWNER_KEY = "the-owner-key"


def conn(hub: Hub, nickname: str, sock: FakeSocket, client: str, owner: bool = False) -> Conn:
    return hub_join(hub, "r1", nickname, sock, client=client, owner=owner)


def test_the_owner_behind_the_kicked_members_address_stays() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        own, sib = FakeSocket(), FakeSocket()
        conn(hub, "Owner", own, "k-home", owner=True)
        conn(hub, "Sibling", sib, "k-home")
        hub.broadcast("r1", {"type": "kicked", "nickname": "Sibling"})
        hub.from_relay("r1", {"type": "kicked", "nickname": "Owner"})  # never the owner's
        await settle()
        assert sib.closed == 1008 and sib.sent[-1]["code"] == "kicked"
        assert own.closed is None
        assert all(f.get("type") != "error" for f in own.sent)
        hub.close_all()

    in_own_loop(run())


def test_mutes_never_reach_the_owners_connections() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        owner = conn(hub, "Owner", FakeSocket(), "k-home", owner=True)
        rude = conn(hub, "Rude", FakeSocket(), "k-home")
        apply_moderated(hub, RoomModerated(room_id="r1", action="mute", nickname="Rude"))
        assert hub.is_muted(rude) and not hub.is_muted(owner)
        # The owner reconnecting (proving the key) is not muted for sharing the address...
        again = conn(hub, "Owner2", FakeSocket(), "k-home", owner=True)
        assert not hub.is_muted(again)
        # ...while the muted member's new nickname is.
        assert hub.is_muted(conn(hub, "Rude2", FakeSocket(), "k-home"))
        # A mute aimed at the owner's nickname records no client and silences nobody.
        hub2 = Hub("me", relay)
        boss = conn(hub2, "Boss", FakeSocket(), "k-office", owner=True)
        apply_moderated(hub2, RoomModerated(room_id="r1", action="mute", nickname="Boss"))
        view = hub2.view("r1")
        assert view is not None and view.muted_clients == set() and not hub2.is_muted(boss)
        assert not hub2.is_muted(conn(hub2, "Colleague", FakeSocket(), "k-office"))
        hub.close_all()
        hub2.close_all()

    in_own_loop(run())


# -- the domain moves, over in-memory ports ----------------------------------------------------


class Limiter:
    def hit(self, client: str, cost: int) -> Allowance:
        return Allowance(True, 0, 100)


class Rooms:
    def __init__(self, room: dict[str, Any]) -> None:
        self.room = room

    def by_slug(self, slug: str) -> dict[str, Any]:
        return self.room

    def kick(self, room_id: str, client: str, until: datetime) -> bool:
        self.room.setdefault("kicked", []).append({"client": client, "until": until})
        return True


class Members:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def member_id(room_id: str, key: str) -> str:
        return f"{room_id}:{key}"

    def claim(self, doc: dict[str, Any], stale_before: datetime) -> bool:
        if doc["_id"] in self.docs:
            return False
        self.docs[doc["_id"]] = doc
        return True

    def get(self, room_id: str, key: str) -> dict[str, Any] | None:
        return self.docs.get(self.member_id(room_id, key))

    def remove(self, room_id: str, key: str) -> bool:
        return self.docs.pop(self.member_id(room_id, key), None) is not None

    def in_room(self, room_id: str) -> list[dict[str, Any]]:
        return list(self.docs.values())


class Messages:
    def recent_visible(self, room_id: str, since: datetime, limit: int) -> list[Any]:
        return []


class Ports:
    def __init__(self) -> None:
        self.limiter = Limiter()
        self.rooms = Rooms(
            {
                "_id": "r1",
                "slug": "s",
                "name": "home",
                "public": False,
                "closed_at": None,
                "expires_at": datetime.now(UTC) + timedelta(hours=1),
                "owner_token_hash": token_hash(SALT, OWNER_KEY),
                "kicked": [],
            }
        )
        self.members = Members()
        self.messages = Messages()


def join(p: Ports, nickname: str, client: str, **extra: Any) -> ops.Joined:
    frame = {"type": "join", "nickname": nickname, **extra}
    return ops.join(
        p,  # type: ignore[arg-type]
        RoomsSettings(),
        SALT,
        slug="s",
        frame=frame,
        client=client,
        conn_id=nickname,
    )


def kick(p: Ports, nickname: str) -> str:
    return moderation.kick(
        p,  # type: ignore[arg-type]
        RoomsSettings(),
        SALT,
        "s",
        OWNER_KEY,
        nickname,
        lambda r, f, t: None,
    )


def test_a_kick_bars_the_address_except_a_join_proving_the_owner_key() -> None:
    p = Ports()
    owner = join(p, "Owner", "k-home", owner_key=OWNER_KEY)
    assert owner.owner and owner.welcome["owner"] is True
    assert p.members.get("r1", "owner")["owner"] is True  # type: ignore[index]
    assert join(p, "Sibling", "k-home").owner is False
    assert kick(p, "Sibling") == "Sibling"
    with pytest.raises(FrameError) as barred:  # the kicked person under a new nickname
        join(p, "Sneaky", "k-home")
    assert barred.value.code == "kicked" and barred.value.fatal
    with pytest.raises(FrameError) as wrong:  # a wrong owner key proves nothing
        join(p, "Sneaky", "k-home", owner_key="guess")
    assert wrong.value.code == "kicked"
    back = join(p, "Owner tab 2", "k-home", owner_key=OWNER_KEY)
    assert back.owner and back.welcome["owner"] is True


def test_the_owner_cannot_be_kicked() -> None:
    p = Ports()
    join(p, "Owner", "k-home", owner_key=OWNER_KEY)
    with pytest.raises(DomainError) as err:
        kick(p, "owner")
    assert err.value.status == 409 and err.value.code == "owner_not_kickable"
    assert p.rooms.room["kicked"] == [] and p.members.get("r1", "owner") is not None


def test_a_mute_of_the_owners_nickname_records_no_client() -> None:
    p = Ports()
    join(p, "Owner", "k-home", owner_key=OWNER_KEY)
    assert mute_member_clients(p, "r1", "Owner") == []  # type: ignore[arg-type]


def test_refusals_before_a_join_leave_the_socket_open() -> None:
    p = Ports()
    join(p, "Dana", "k-1")
    for nickname, code in (("dANA", "nickname_taken"), ("  ", "nickname_invalid")):
        with pytest.raises(FrameError) as err:
            join(p, nickname, "k-2")
        assert err.value.code == code and not err.value.fatal
    assert join(p, "Dana2", "k-2").nickname == "Dana2"


# -- forms: strict UTF-8 -----------------------------------------------------------------------


def form_request(body: bytes, ctype: str = "application/x-www-form-urlencoded") -> Any:
    from starlette.requests import Request

    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/rooms/new",
        "headers": [(b"content-type", ctype.encode())],
    }
    return Request(scope, receive)


def parse(body: bytes, ctype: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    from services.rooms.page_routes import form_fields

    out: dict[str, str] = {}

    async def run() -> None:
        out.update(await form_fields(form_request(body, ctype)))

    in_own_loop(run())
    return out


def test_forms_refuse_bytes_that_are_not_utf8() -> None:
    assert parse(b"name=Caf%C3%A9+%E2%98%95&public=1") == {"name": "Café ☕", "public": "1"}
    for bad in (b"name=%ED%A0%80%FF&public=1", b"name=%FF", b"name=\xff\xfe"):
        with pytest.raises(DomainError) as err:
            parse(bad)
        assert err.value.code == "invalid_text" and err.value.status == 400
    with pytest.raises(DomainError) as big:
        parse(b"name=" + b"x" * 5000)
    assert big.value.status == 413
    with pytest.raises(DomainError) as multipart:
        parse(b"--x--", "multipart/form-data; boundary=x")
    assert multipart.value.code == "unsupported_form"
