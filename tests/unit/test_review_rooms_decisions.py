"""Room report decisions without a database: each action's move, the image keeps released, the
audit record, the count and the ``room.moderated`` event; refusals (unknown action, reasons,
admins only, missing and already decided reports); a broker outage that loses no decision; a
failed move that reopens the report; and what the rooms queue shows (text only, escaped)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.review import metrics, room_decisions, rooms
from services.review.jobs import POLICY_REASONS, human_age
from services.review.ports import Ports
from services.shared import roommod
from services.shared.errors import DomainError
from services.shared.events import ROOM_MODERATED, decode, topic_name
from services.shared.kafka import MemoryPublisher
from services.shared.pages import Pages
from services.shared.repos import now

Doc = dict[str, Any]


@dataclass(frozen=True)
class Who:
    username: str
    is_admin: bool = False


ALICE, ADMIN = Who("alice"), Who("root", is_admin=True)


class FakeRooms:
    """In-memory twin of ``rooms.RoomStore`` (same contracts: one conditional move each)."""

    def __init__(self) -> None:
        self.rooms: dict[str, Doc] = {}
        self.messages: dict[str, Doc] = {}
        self.reports: dict[str, Doc] = {}
        self.fail_moves = False

    def add_room(self, room_id: str, name: str = "lobby", public: bool = True) -> None:
        self.rooms[room_id] = {
            "_id": room_id,
            "name": name,
            "public": public,
            "closed_at": None,
            "muted": [],
        }

    def add_message(
        self,
        message_id: str,
        room_id: str,
        nickname: str,
        text: str = "",
        kind: str = "text",
        image_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        self.messages[message_id] = {
            "_id": message_id,
            "room_id": room_id,
            "kind": kind,
            "nickname": nickname,
            "text": text,
            "image_id": image_id,
            "state": roommod.VISIBLE,
            "at": at or now(),
        }

    def report(self, message_id: str, reason: str = "harassment", priority: int = 1) -> str:
        m = self.messages[message_id]
        report_id = f"rep-{message_id}"
        self.reports[report_id] = {
            "_id": report_id,
            "room_id": m["room_id"],
            "message_id": message_id,
            "kind": m["kind"],
            "nickname": m["nickname"],
            "text": m["text"],
            "image_id": m["image_id"],
            "reasons": [reason],
            "reporters": ["h1", "h2"],
            "details": ["", "rude"],
            "priority": priority,
            "state": roommod.OPEN,
            "created_at": now() - timedelta(seconds=90),
        }
        return report_id

    # the RoomStore contract
    def open_reports(self, limit: int, skip: int = 0) -> list[Doc]:
        found = [r for r in self.reports.values() if r["state"] == roommod.OPEN]
        found.sort(key=lambda r: (r["priority"], r["created_at"]))
        return copy.deepcopy(found[skip : skip + limit])

    def open_stats(self) -> tuple[int, datetime | None]:
        found = self.open_reports(1000)
        return len(found), min((r["created_at"] for r in found), default=None)

    def get_report(self, report_id: str) -> Doc | None:
        return copy.deepcopy(self.reports.get(report_id))

    def settle(self, report_id: str, *, state: str, action: str, by: str, reason: str) -> bool:
        r = self.reports.get(report_id)
        if r is None or r["state"] != roommod.OPEN:
            return False
        r.update(state=state, action=action, decided_by=by, decision_reason=reason)
        return True

    def reopen(self, report: Doc) -> bool:
        r = self.reports[report["_id"]]
        if r["state"] == roommod.OPEN:
            return False
        r["state"] = roommod.OPEN
        for k in ("action", "decided_by", "decision_reason"):
            r.pop(k, None)
        return True

    def open_in_room(self, room_id: str) -> list[Doc]:
        return [r for r in self.open_reports(1000) if r["room_id"] == room_id]

    def get_message(self, message_id: str) -> Doc | None:
        return copy.deepcopy(self.messages.get(message_id))

    def remove_message(self, message_id: str, *, by: str, reason: str) -> Doc | None:
        if self.fail_moves:
            raise RuntimeError("database went away")
        m = self.messages.get(message_id)
        if m is None or m["state"] == roommod.REMOVED:
            return None
        before = copy.deepcopy(m)
        m.update(state=roommod.REMOVED, text="", removed_by=by)
        return before

    def mute(self, room_id: str, nickname: str) -> bool:
        room = self.rooms.get(room_id)
        key = roommod.nick_key(nickname)
        if room is None or room["closed_at"] is not None or key in room["muted"]:
            return False
        room["muted"].append(key)
        return True

    def close(self, room_id: str, *, by: str, reason: str) -> bool:
        room = self.rooms.get(room_id)
        if room is None or room["closed_at"] is not None:
            return False
        room.update(closed_at=now(), closed_by=by, closed_reason=reason)
        return True

    def image_ids(self, room_id: str) -> list[str]:
        return [
            str(m["image_id"])
            for m in self.messages.values()
            if m["room_id"] == room_id and m["image_id"]
        ]

    def summary(self, room_id: str) -> dict[str, Any] | None:
        room = self.rooms.get(room_id)
        if room is None:
            return None
        return {
            "room_id": room_id,
            "name": room["name"],
            "public": room["public"],
            "closed": room["closed_at"] is not None,
            "members": 3,
            "muted": list(room["muted"]),
        }

    def context(self, room_id: str, at: datetime) -> list[Doc]:
        before = [m for m in self.messages.values() if m["room_id"] == room_id and m["at"] < at]
        return copy.deepcopy(sorted(before, key=lambda m: m["at"])[-roommod.CONTEXT_MESSAGES :])


@dataclass
class World:
    rooms: FakeRooms = field(default_factory=FakeRooms)
    released: list[str] = field(default_factory=list)
    audits: list[Doc] = field(default_factory=list)
    publisher: MemoryPublisher = field(default_factory=MemoryPublisher)

    @property
    def ports(self) -> Ports:
        def record(action: str, actor: str, target: str, reason: str, **data: Any) -> None:
            self.audits.append(
                {"action": action, "actor": actor, "target": target, "reason": reason, **data}
            )

        images = SimpleNamespace(release_keep=lambda i: self.released.append(i) or True)
        ns = SimpleNamespace(
            rooms=self.rooms,
            images=images,
            audit=SimpleNamespace(record=record),
            publisher=self.publisher,
        )
        return cast(Ports, ns)

    def events(self) -> list[Any]:
        topic = ROOM_MODERATED.topic
        return [
            (key, decode(value, ROOM_MODERATED))
            for t, key, value in self.publisher.records
            if t == topic
        ]


def world() -> World:
    w = World()
    w.rooms.add_room("room1", name="Night owls")
    t = now() - timedelta(minutes=5)
    for n in range(7):
        w.rooms.add_message(f"m{n}", "room1", f"nick{n}", f"hello {n}", at=t + timedelta(seconds=n))
    w.rooms.add_message("bad", "room1", "Troll", "<b>nasty</b>", at=t + timedelta(seconds=30))
    w.rooms.add_message(
        "pic", "room1", "Troll", kind="image", image_id="img1", at=t + timedelta(seconds=40)
    )
    return w


def count(action: str) -> float:
    return metrics.ROOM_DECISIONS.labels(action)._value.get()


def test_remove_message_drops_it_releases_nothing_for_text_and_tells_the_rooms() -> None:
    w = world()
    rid = w.rooms.report("bad")
    before = count("remove_message")
    done = room_decisions.decide_room_report(w.ports, rid, ALICE, "remove_message", "harassment")
    assert done.to_dict() == {
        "decided": rid,
        "action": "remove_message",
        "room_id": "room1",
        "message_id": "bad",
        "changed": True,
        "announced": True,
        "released": [],
        "also_settled": [],
    }
    assert w.rooms.messages["bad"]["state"] == roommod.REMOVED
    assert w.rooms.messages["bad"]["text"] == ""
    report = w.rooms.reports[rid]
    assert (report["state"], report["action"], report["decided_by"]) == (
        "actioned",
        "remove_message",
        "alice",
    )
    [audit] = w.audits
    assert audit["action"] == "room.remove_message" and audit["actor"] == "alice"
    assert audit["target"] == "bad" and audit["reason"] == "harassment"
    assert audit["room_id"] == "room1" and audit["report_id"] == rid
    [(key, env)] = w.events()
    assert key == b"room1"
    assert env.payload.model_dump() == {
        "room_id": "room1",
        "action": "remove_message",
        "message_id": "bad",
        "nickname": "Troll",
        "reason": "harassment",
    }
    assert count("remove_message") == before + 1
    assert w.released == []


def test_removing_an_image_message_releases_its_keep() -> None:
    w = world()
    rid = w.rooms.report("pic", "sexual_content")
    done = room_decisions.decide_room_report(w.ports, rid, ALICE, "remove_message", "spam")
    assert done.released == ["img1"] and w.released == ["img1"]
    assert w.audits[0]["released_images"] == ["img1"]


def test_mute_adds_the_nickname_key_once() -> None:
    w = world()
    rid = w.rooms.report("bad")
    done = room_decisions.decide_room_report(w.ports, rid, ALICE, "mute", "harassment", "again")
    assert done.changed and w.rooms.rooms["room1"]["muted"] == ["troll"]
    assert w.audits[0]["target"] == "room1" and w.audits[0]["note"] == "again"
    assert w.rooms.messages["bad"]["state"] == roommod.VISIBLE  # the message stays
    [(_, env)] = w.events()
    assert env.payload.action == "mute" and env.payload.nickname == "Troll"
    # A second report of another message by the same nickname: already muted, no change.
    rid2 = w.rooms.report("pic")
    again = room_decisions.decide_room_report(w.ports, rid2, ALICE, "mute", "spam")
    assert not again.changed and w.rooms.rooms["room1"]["muted"] == ["troll"]


def test_close_is_for_admins_and_releases_every_image_and_settles_the_rooms_reports() -> None:
    w = world()
    rid = w.rooms.report("bad")
    other = w.rooms.report("pic")
    with pytest.raises(DomainError) as refused:
        room_decisions.decide_room_report(w.ports, rid, ALICE, "close", "harassment")
    assert (refused.value.status, refused.value.code) == (403, "admin_only")
    assert w.rooms.rooms["room1"]["closed_at"] is None and w.rooms.reports[rid]["state"] == "open"
    assert w.audits == [] and w.events() == []
    assert "close" not in room_decisions.actions_for(ALICE)
    assert "close" in room_decisions.actions_for(ADMIN)

    done = room_decisions.decide_room_report(w.ports, rid, ADMIN, "close", "harassment")
    room = w.rooms.rooms["room1"]
    assert room["closed_at"] is not None and room["closed_by"] == "moderator"
    assert done.released == ["img1"] and w.released == ["img1"]
    assert done.also_settled == [other] and w.rooms.reports[other]["state"] == "actioned"
    assert w.audits[0]["action"] == "room.close" and w.audits[0]["target"] == "room1"
    [(_, env)] = w.events()
    assert env.payload.action == "close"


def test_dismiss_changes_nothing_and_publishes_nothing() -> None:
    w = world()
    rid = w.rooms.report("m3", "spam")
    done = room_decisions.decide_room_report(w.ports, rid, ALICE, "dismiss", "no_violation")
    assert not done.changed and not done.announced
    assert w.rooms.reports[rid]["state"] == "dismissed"
    assert w.rooms.messages["m3"]["state"] == roommod.VISIBLE
    assert w.audits[0]["action"] == "room.dismiss" and w.events() == []


@pytest.mark.parametrize(
    ("action", "reason", "code", "status"),
    [
        ("frobnicate", "spam", "unknown_action", 400),
        ("", "spam", "unknown_action", 400),
        ("remove_message", "", "invalid_reason", 400),
        ("remove_message", "because", "invalid_reason", 400),
        ("remove_message", "no_violation", "reason_mismatch", 400),
        ("dismiss", "harassment", "reason_mismatch", 400),
    ],
)
def test_refusals_change_nothing(action: str, reason: str, code: str, status: int) -> None:
    w = world()
    rid = w.rooms.report("bad")
    with pytest.raises(DomainError) as refused:
        room_decisions.decide_room_report(w.ports, rid, ADMIN, action, reason)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert w.rooms.reports[rid]["state"] == "open" and w.audits == []


def test_missing_and_already_decided_reports() -> None:
    w = world()
    with pytest.raises(DomainError) as missing:
        room_decisions.decide_room_report(w.ports, "nope", ALICE, "dismiss", "other")
    assert (missing.value.status, missing.value.code) == (404, "report_not_found")
    rid = w.rooms.report("bad")
    room_decisions.decide_room_report(w.ports, rid, ALICE, "dismiss", "other")
    with pytest.raises(DomainError) as again:
        room_decisions.decide_room_report(w.ports, rid, ADMIN, "remove_message", "spam")
    assert (again.value.status, again.value.code) == (409, "already_decided")
    assert again.value.data["action"] == "dismiss" and again.value.data["decided_by"] == "alice"
    assert w.rooms.messages["bad"]["state"] == roommod.VISIBLE and len(w.audits) == 1


def test_a_broker_outage_loses_no_decision() -> None:
    w = world()
    w.publisher.fail = True
    rid = w.rooms.report("bad")
    metric = metrics.UNPUBLISHED.labels(ROOM_MODERATED.name)
    before = metric._value.get()
    done = room_decisions.decide_room_report(w.ports, rid, ALICE, "remove_message", "spam")
    assert done.changed and not done.announced
    assert w.rooms.messages["bad"]["state"] == roommod.REMOVED
    assert w.rooms.reports[rid]["state"] == "actioned" and len(w.audits) == 1
    assert metric._value.get() == before + 1


def test_a_failed_move_reopens_the_report() -> None:
    w = world()
    w.rooms.fail_moves = True
    rid = w.rooms.report("bad")
    with pytest.raises(RuntimeError):
        room_decisions.decide_room_report(w.ports, rid, ALICE, "remove_message", "spam")
    assert w.rooms.reports[rid]["state"] == "open" and w.audits == [] and w.events() == []


def test_the_queue_shows_text_context_never_images_minor_safety_first() -> None:
    w = world()
    w.rooms.report("bad", "harassment")
    w.rooms.report("pic", "minor_safety", priority=0)
    w.rooms.messages["m6"]["state"] = roommod.REMOVED
    listed = rooms.listing(cast(rooms.RoomStore, w.rooms))
    assert [r["message"]["message_id"] for r in listed] == ["pic", "bad"]
    pic, bad = listed
    assert pic["message"]["kind"] == "image" and pic["message"]["text"] == ""
    assert (
        pic["context"][-1]["message_id"] == "bad" and pic["context"][-1]["text"] == "<b>nasty</b>"
    )
    assert bad["message"]["text"] == "<b>nasty</b>" and bad["reporters"] == 2
    assert bad["details"] == ["rude"] and bad["age_s"] >= 90
    context = bad["context"]
    assert [m["message_id"] for m in context] == ["m2", "m3", "m4", "m5", "m6"]
    assert context[-1]["text"] == "" and context[0]["text"] == "hello 2"
    assert bad["room"]["name"] == "Night owls" and not bad["room"]["closed"]
    entry = rooms.queue_entry(cast(rooms.RoomStore, w.rooms))
    assert entry["depth"] == 2 and entry["oldest_age_s"] >= 90


def test_the_page_escapes_what_members_wrote() -> None:
    w = world()
    w.rooms.messages["m5"]["text"] = "<script>alert(1)</script>"
    w.rooms.rooms["room1"]["name"] = '"><img src=x onerror=alert(2)>'
    w.rooms.report("bad")
    pages = Pages("services.review")
    pages.env.filters.setdefault("age", human_age)
    me = SimpleNamespace(
        username="alice", is_admin=False, csrf_token="tok", role="reviewer", prefs={}
    )
    html = pages.render(
        "rooms.html",
        me=me,
        request_path="/rooms",
        reports=rooms.listing(cast(rooms.RoomStore, w.rooms)),
        queue=rooms.queue_entry(cast(rooms.RoomStore, w.rooms)),
        actions=room_decisions.actions_for(me),
        reasons=POLICY_REASONS,
    ).body.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>nasty</b>" not in html and "&lt;b&gt;nasty&lt;/b&gt;" in html
    assert "<img src=x" not in html
    assert 'value="close"' not in html and "Close room: admins only" in html
    assert 'data-key="r"' in html and 'data-key="m"' in html and 'data-key="d"' in html


def test_the_event_topic_is_registered() -> None:
    assert topic_name("chatpic.", ROOM_MODERATED.topic) == "chatpic.room.moderated"
