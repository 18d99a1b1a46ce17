"""Kicks end the kicked member (every process) and mutes follow the member's client to new
nicknames, neither reaching others behind the same address; images that stop being cleared
leave rooms; a removal reaches each socket once."""

from __future__ import annotations

from typing import Any

from services.rooms import background
from services.rooms.background import apply_moderated, refresh_once
from services.rooms.hub import Conn, Hub, RoomView
from services.shared import roommod
from services.shared.events import RoomModerated
from tests.unit.test_rooms_hub import FakeSocket, in_own_loop, join, relay_twin, settle


def member(hub: Hub, room_id: str, nickname: str, sock: FakeSocket, client: str) -> Conn:
    return join(hub, room_id, nickname, sock, client=client, conn_id=f"{nickname}-{client}")


# -- 1. a kick ends the kicked member's sockets, not others behind its address ------------------


def test_a_kick_ends_the_members_sockets_only() -> None:
    async def run() -> None:
        relayed, relay = relay_twin()
        hub = Hub("me", relay)
        troll, sibling, other = FakeSocket(), FakeSocket(), FakeSocket()
        member(hub, "r1", "troll", troll, "k-shared")
        member(hub, "r1", "sibling", sibling, "k-shared")
        member(hub, "r1", "fine", other, "k-fine")
        hub.broadcast("r1", {"type": "kicked", "nickname": "troll"})
        await settle()
        assert troll.closed == 1008 and troll.sent[-1]["code"] == "kicked"
        assert sibling.closed is None and other.closed is None
        assert other.sent == sibling.sent == [{"type": "kicked", "nickname": "troll"}]
        assert relayed == [("r1", {"type": "kicked", "nickname": "troll"})]
        hub.close_all()

    in_own_loop(run())


def test_a_relayed_kick_ends_the_members_socket_on_another_process() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("other", relay)
        troll, other = FakeSocket(), FakeSocket()
        member(hub, "r1", "troll", troll, "k-troll")
        member(hub, "r1", "fine", other, "k-fine")
        hub.from_relay("r1", {"type": "kicked", "nickname": "troll"})
        await settle()
        assert troll.closed == 1008 and other.closed is None
        assert other.sent == [{"type": "kicked", "nickname": "troll"}]
        hub.close_all()

    in_own_loop(run())


def test_kick_bars_the_members_client_and_names_only_the_member() -> None:
    from datetime import UTC, datetime, timedelta

    from services.rooms import moderation
    from services.rooms.settings import RoomsSettings
    from services.shared.tokens import token_hash

    settings = RoomsSettings()
    salt = b"salt"
    room = {
        "_id": "r1",
        "slug": "s",
        "closed_at": None,
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
        "owner_token_hash": token_hash(salt, "owner"),
    }
    kicked: list[str] = []
    removed: list[str] = []

    class Rooms:
        def by_slug(self, slug: str) -> dict[str, Any]:
            return room

        def kick(self, room_id: str, client: str, until: Any) -> bool:
            kicked.append(client)
            return True

    class Members:
        def get(self, room_id: str, key: str) -> dict[str, Any]:
            return {"nickname": "troll", "client": "k-troll"}

        def remove(self, room_id: str, key: str) -> bool:
            removed.append(key)
            return True

    class P:
        rooms = Rooms()
        members = Members()

    frames: list[dict[str, Any]] = []
    name = moderation.kick(
        P(),  # type: ignore[arg-type]
        settings,
        salt,
        "s",
        "owner",
        "Troll",
        lambda r, f, t: frames.append(f),
    )
    assert name == "troll" and kicked == ["k-troll"] and removed == ["troll"]
    assert frames == [{"type": "kicked", "nickname": "troll"}]  # no client key to act on


# -- 2. a mute follows the client to new nicknames ---------------------------------------------


def test_a_mute_refuses_the_clients_new_nicknames_not_others_already_here() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        rude, sibling, reader = FakeSocket(), FakeSocket(), FakeSocket()
        c_rude = member(hub, "r1", "rude", rude, "k-rude")
        c_sibling = member(hub, "r1", "sibling", sibling, "k-rude")
        member(hub, "r1", "reader", reader, "k-reader")
        apply_moderated(hub, RoomModerated(room_id="r1", action="mute", nickname="rude"))
        await settle()
        view = hub.view("r1")
        assert view is not None and view.muted_clients == {"k-rude"}
        assert hub.is_muted(c_rude) and not hub.is_muted(c_sibling)
        assert "reader" not in view.muted
        assert reader.sent == [{"type": "muted", "nickname": "rude"}]  # no client keys
        # A rejoin under yet another nickname from the same client is muted.
        rude3 = member(hub, "r1", "rude3", FakeSocket(), "k-rude")
        assert hub.is_muted(rude3) and "rude3" in view.muted
        hub.close_all()

    in_own_loop(run())


def test_a_mute_event_carries_the_members_client_to_processes_without_its_socket() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("other", relay)
        sibling = member(hub, "r1", "sibling", FakeSocket(), "k-rude")
        member(hub, "r1", "reader", FakeSocket(), "k-reader")
        event = RoomModerated(room_id="r1", action="mute", nickname="rude")
        apply_moderated(hub, event, ["k-rude"])
        view = hub.view("r1")
        assert view is not None and not hub.is_muted(sibling)
        late = member(hub, "r1", "rude2", FakeSocket(), "k-rude")
        assert hub.is_muted(late) and "reader" not in view.muted
        hub.close_all()

    in_own_loop(run())


def test_a_joiner_of_a_muted_client_is_muted_from_the_room_doc() -> None:
    room = {"_id": "r1", "muted": ["rude"], "muted_clients": ["k-rude"]}

    def view_of_doc() -> RoomView:  # as the socket route builds it from the room doc (a join)
        return RoomView(
            slug="s",
            expires_at=None,
            muted=set(room["muted"]),
            muted_clients=set(room["muted_clients"]),
        )

    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        conn = Conn(
            socket=FakeSocket(),  # type: ignore[arg-type]
            conn_id="c1",
            room_id="r1",
            slug="s",
            nickname="newname",
            key="newname",
            tripcode=None,
            client="k-rude",
            queue=hub.new_queue(),
        )
        hub.add(conn, view_of_doc())
        view = hub.view("r1")
        assert view is not None
        assert view.muted == {"rude", "newname"} and view.muted_clients == {"k-rude"}
        # Joining a room whose view this process already holds merges the fresh doc's mutes.
        hub2 = Hub("me", relay)
        member(hub2, "r1", "reader", FakeSocket(), "k-reader")
        conn2 = Conn(
            socket=FakeSocket(),  # type: ignore[arg-type]
            conn_id="c2",
            room_id="r1",
            slug="s",
            nickname="other",
            key="other",
            tripcode=None,
            client="k-rude",
            queue=hub2.new_queue(),
        )
        hub2.add(conn2, view_of_doc())
        view2 = hub2.view("r1")
        assert view2 is not None and "other" in view2.muted and "reader" not in view2.muted
        hub.close_all()
        hub2.close_all()

    in_own_loop(run())


def test_the_refresh_picks_up_a_mute_the_broker_lost() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        rude = member(hub, "r1", "rude", FakeSocket(), "k-rude")
        sibling = member(hub, "r1", "sibling", FakeSocket(), "k-rude")
        member(hub, "r1", "reader", FakeSocket(), "k-reader")
        refresh_once(hub, [{"_id": "r1", "closed_at": None, "muted": ["rude"]}], [])
        view = hub.view("r1")
        assert view is not None and view.muted == {"rude"} and view.muted_clients == {"k-rude"}
        assert hub.is_muted(rude) and not hub.is_muted(sibling)
        assert hub.is_muted(member(hub, "r1", "rude2", FakeSocket(), "k-rude"))
        hub.close_all()

    in_own_loop(run())


class FakeDb:
    """Just enough of a pymongo database for roommod.mute_clients / withdraw_message."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.withdrawn: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        db = self

        class Result:
            def __init__(self, n: int) -> None:
                self.modified_count = n

        class Col:
            def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> Result:
                db.updates.append((name, query, update))
                if name == roommod.MESSAGES:
                    fresh = query["_id"] not in db.withdrawn
                    db.withdrawn.add(query["_id"])
                    return Result(1 if fresh else 0)
                return Result(1)

        return Col()


def test_the_refresh_records_the_clients_of_muted_members() -> None:
    db = FakeDb()

    class Members:
        @staticmethod
        def member_id(room_id: str, key: str) -> str:
            return f"{room_id}:{key}"

        def by_ids(self, ids: list[str]) -> list[dict[str, Any]]:
            assert ids == ["r1:rude"]
            return [{"_id": "r1:rude", "room_id": "r1", "client": "k-rude"}]

    class P:
        members = Members()

    P.db = db  # type: ignore[attr-defined]
    docs = [{"_id": "r1", "closed_at": None, "muted": ["rude"]}]
    background.sync_muted_clients(P(), docs)  # type: ignore[arg-type]
    assert docs[0]["muted_clients"] == ["k-rude"]
    assert db.updates == [
        (
            roommod.ROOMS,
            {"_id": "r1", "closed_at": None},
            {"$addToSet": {"muted_clients": {"$each": ["k-rude"]}}},
        )
    ]
    db.updates.clear()
    background.sync_muted_clients(P(), docs)  # type: ignore[arg-type]
    assert db.updates == []  # already recorded


# -- 3. images that stop being cleared leave the room ------------------------------------------


def test_images_no_longer_cleared_are_withdrawn_in_one_batched_read() -> None:
    db = FakeDb()
    reads: list[list[str]] = []

    class Messages:
        def visible_images(self, room_ids: list[str]) -> list[dict[str, Any]]:
            return [
                {"_id": "m1", "room_id": "r1", "image_id": "i1"},
                {"_id": "m2", "room_id": "r1", "image_id": "i2"},
                {"_id": "m3", "room_id": "r1", "image_id": "i3"},
                {"_id": "m4", "room_id": "r1", "image_id": "i4"},
            ]

    class Images:
        def statuses(self, image_ids: list[str]) -> dict[str, str]:
            reads.append(image_ids)
            return {"i1": "cleared", "i2": "deleted", "i3": "review"}  # i4: gone

    class P:
        messages = Messages()
        images = Images()

    P.db = db  # type: ignore[attr-defined]
    gone = background.withdraw_uncleared(P(), ["r1"])  # type: ignore[arg-type]
    assert [m["_id"] for m in gone] == ["m2", "m3", "m4"]
    assert reads == [["i1", "i2", "i3", "i4"]]
    sets = [u for (col, q, u) in db.updates if col == roommod.MESSAGES]
    assert all(
        s["$set"]["state"] == roommod.REMOVED and s["$set"]["removed_by"] == roommod.BY_IMAGE_STATUS
        for s in sets
    )
    assert next(q for (_, q, _) in db.updates) == {"_id": "m2", "state": roommod.VISIBLE}


def test_withdrawn_images_reach_sockets_once() -> None:
    async def run() -> None:
        _, relay = relay_twin()
        hub = Hub("me", relay)
        a = FakeSocket()
        member(hub, "r1", "ann", a, "k-ann")
        room: dict[str, Any] = {"_id": "r1", "closed_at": None, "muted": []}
        withdrawn = [{"_id": "m2", "room_id": "r1", "image_id": "i2"}]
        refresh_once(hub, [room], [], withdrawn)
        # The next pass finds it among the recent removals; another process relays it too.
        refresh_once(hub, [room], [{"_id": "m2", "room_id": "r1"}])
        hub.from_relay("r1", {"type": "removed", "id": "m2"})
        await settle()
        assert a.sent == [{"type": "removed", "id": "m2"}]
        hub.close_all()

    in_own_loop(run())


# -- 4. one removal, one frame -----------------------------------------------------------------


def test_a_removal_reaches_each_socket_once_whatever_brings_it() -> None:
    async def run() -> None:
        relayed, relay = relay_twin()
        hub = Hub("me", relay)
        a, b = FakeSocket(), FakeSocket()
        member(hub, "r1", "ann", a, "k-ann")
        member(hub, "r1", "bo", b, "k-bo")
        hub.broadcast("r1", {"type": "removed", "id": "m1"})  # take-down event, this process
        apply_moderated(hub, RoomModerated(room_id="r1", action="remove_message", message_id="m1"))
        room: dict[str, Any] = {"_id": "r1", "closed_at": None, "muted": []}
        refresh_once(hub, [room], [{"_id": "m1", "room_id": "r1"}])
        refresh_once(hub, [room], [{"_id": "m1", "room_id": "r1"}])  # overlapping window
        hub.from_relay("r1", {"type": "removed", "id": "m1"})
        hub.broadcast("r1", {"type": "removed", "id": "m2"})
        await settle()
        assert a.sent == [{"type": "removed", "id": "m1"}, {"type": "removed", "id": "m2"}]
        assert b.sent == a.sent
        assert [f["id"] for _, f in relayed] == ["m1", "m2"]
        hub.close_all()

    in_own_loop(run())
