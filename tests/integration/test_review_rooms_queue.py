"""The rooms queue on the live stack: room reports seeded straight into the database (rooms and
messages as the rooms service stores them, reports through ``roommod.file_room_report``), then
listed by the API and the page (escaped), decided (remove, mute, close, dismiss) with the move in
MongoDB, the audit record, ``room.moderated`` on the broker, the counts and every refusal."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from services.shared import roommod
from services.shared.events import ROOM_MODERATED, decode, topic_name
from services.shared.reports import ReportReason
from services.shared.repos import ImageRepo, now
from services.shared.tokens import new_id
from tests.integration.links_helpers import cleared_upload, unique_photo
from tests.live import Live

XSS = '<script>alert("room")</script><img src=x onerror=alert(1)>'


def seed_room(live: Live, name: str = "Night owls", public: bool = True) -> str:
    room_id, at = new_id(), now()
    live.db[roommod.ROOMS].insert_one(
        {
            "_id": room_id,
            "slug": secrets.token_urlsafe(16),
            "name": name,
            "public": public,
            "created_at": at,
            "expires_at": at + timedelta(hours=2),
            "idle_until": at + timedelta(hours=1),
            "closed_at": None,
            "closed_reason": None,
            "closed_by": None,
            "owner_token_hash": "not-a-real-hash",
            "muted": [],
            "kicked": [],
            "doc_expires_at": None,
        }
    )
    return room_id


def post(
    live: Live, room_id: str, nickname: str, text: str = "", image_id: str | None = None
) -> str:
    message_id, at = new_id(), now()
    live.db[roommod.MESSAGES].insert_one(
        {
            "_id": message_id,
            "room_id": room_id,
            "kind": "image" if image_id else "text",
            "nickname": nickname,
            "tripcode": None,
            "text": text,
            "image_id": image_id,
            "state": "visible",
            "at": at,
            "expires_at": at + timedelta(hours=2),
        }
    )
    time.sleep(0.01)  # distinct times, so the context order is certain
    return message_id


def report(
    live: Live,
    room_id: str,
    message_id: str,
    reason: ReportReason = ReportReason.HARASSMENT,
    reporter: str = "",
) -> str:
    return roommod.file_room_report(
        live.db,
        room_id=room_id,
        message_id=message_id,
        reason=reason,
        details="they keep at it",
        reporter=reporter or secrets.token_hex(8),
        keep_until=now() + timedelta(days=1),
    )


def chat(live: Live, lines: int = 4) -> tuple[str, list[str]]:
    room_id = seed_room(live)
    return room_id, [post(live, room_id, f"nick{n}", f"line {n}") for n in range(lines)]


def decide(client: Any, report_id: str, action: str, reason: str, **extra: Any) -> Any:
    body = {"action": action, "reason": reason, **extra}
    return client.post(f"/api/v1/room-reports/{report_id}/decision", json=body)


def listed(live: Live) -> dict[str, dict[str, Any]]:
    resp = live.review.get("/api/v1/room-reports", params={"limit": 100})
    assert resp.status_code == 200, resp.text
    return {r["report_id"]: r for r in resp.json()["reports"]}


def announced(live: Live, message_id: str, action: str, timeout: float = 10) -> dict[str, Any]:
    """The room.moderated record for this message, read from the start of the topic."""
    topic = topic_name("chatpic.", ROOM_MODERATED.topic)
    consumer = KafkaConsumer(
        bootstrap_servers=live.bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        deadline = time.monotonic() + timeout
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        consumer.seek_to_beginning()
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    env = decode(rec.value, ROOM_MODERATED)
                    if env.payload.message_id == message_id and env.payload.action == action:
                        assert rec.key == env.payload.room_id.encode()
                        return env.payload.model_dump()
        raise AssertionError(f"no room.moderated {action} for {message_id} on {topic}")
    finally:
        consumer.close()


def test_the_queue_lists_reports_with_context_and_the_page_escapes_them(live: Live) -> None:
    room_id, _ = chat(live)
    bad = post(live, room_id, "Troll<b>", XSS)
    rid = report(live, room_id, bad)
    assert report(live, room_id, bad, ReportReason.SPAM) == rid  # a second reporter joins
    urgent_room, urgent_lines = chat(live, 1)
    urgent = report(live, urgent_room, urgent_lines[0], ReportReason.MINOR_SAFETY)

    found = listed(live)
    item = found[rid]
    assert item["reporters"] == 2 and set(item["reasons"]) == {"harassment", "spam"}
    assert item["message"] == {
        "message_id": bad,
        "kind": "text",
        "nickname": "Troll<b>",
        "nickname_muted": False,
        "text": XSS,
        "image_id": None,
        "state": "visible",
        "at": item["message"]["at"],
    }
    assert item["room"]["name"] == "Night owls" and item["room"]["public"] is True
    assert [m["text"] for m in item["context"]] == [f"line {n}" for n in range(4)]
    assert item["details"] == ["they keep at it", "they keep at it"] and item["age_s"] >= 0
    order = list(found)
    assert order.index(urgent) < order.index(rid)  # minor safety first
    assert found[urgent]["priority"] == 0

    page = live.review.get("/rooms")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f'id="report-{rid}"' in html and "line 3" in html
    assert "<script>alert(" not in html and "&lt;script&gt;alert(" in html
    assert "<img src=x" not in html and "Troll&lt;b&gt;" in html
    assert html.index(f'id="report-{urgent}"') < html.index(f'id="report-{rid}"')
    assert 'href="/rooms"' in html and "/assets/rooms.js" in html
    assert live.review.get("/assets/rooms.js").status_code == 200

    queues = live.review.get("/api/v1/queues").json()
    assert queues["rooms"]["depth"] >= 2 and queues["rooms"]["url"] == "/rooms"
    home = live.review.get("/").text
    assert 'id="rooms-queue"' in home and 'data-key="o"' in home


def test_remove_message_settles_audits_and_announces(live: Live) -> None:
    room_id, _ = chat(live, 2)
    bad = post(live, room_id, "Troll", "buy my stuff")
    rid = report(live, room_id, bad, ReportReason.SPAM)

    resp = decide(live.review, rid, "remove_message", "spam", note="first strike")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["decided"] == rid and body["changed"] is True and body["announced"] is True
    message = live.db[roommod.MESSAGES].find_one({"_id": bad})
    assert message["state"] == "removed" and message["text"] == ""
    stored = live.db[roommod.REPORTS].find_one({"_id": rid})
    assert stored["state"] == "actioned" and stored["action"] == "remove_message"
    assert stored["decided_by"] == "admin"
    audit = live.db.audit.find_one({"action": "room.remove_message", "target": bad})
    assert audit["actor"] == "admin" and audit["reason"] == "spam"
    assert audit["room_id"] == room_id and audit["report_id"] == rid
    assert audit["note"] == "first strike"
    payload = announced(live, bad, "remove_message")
    assert payload == {
        "room_id": room_id,
        "action": "remove_message",
        "message_id": bad,
        "nickname": "Troll",
        "reason": "spam",
    }
    assert rid not in listed(live)

    again = decide(live.review, rid, "dismiss", "other")
    assert again.status_code == 409 and again.json()["code"] == "already_decided"
    assert again.json()["action"] == "remove_message"

    # The audit page and its CSV export show it.
    page = live.review.get("/audit", params={"action": "room.remove_message", "target": bad})
    assert page.status_code == 200 and bad in page.text and "first strike" in page.text
    csv = live.review.get("/audit/export.csv", params={"action": "room.remove_message"})
    assert csv.status_code == 200 and f"room.remove_message,{bad},spam" in csv.text


def test_removing_an_image_message_releases_the_rooms_keep(live: Live) -> None:
    image_id, _ = cleared_upload(live, unique_photo(7301))
    assert ImageRepo(live.db).keep_for(image_id, now() + timedelta(hours=1))
    room_id = seed_room(live)
    pic = post(live, room_id, "Snapper", image_id=image_id)
    rid = report(live, room_id, pic, ReportReason.SEXUAL_CONTENT)
    item = listed(live)[rid]
    assert item["message"]["kind"] == "image" and item["message"]["text"] == ""
    page = live.review.get("/rooms").text
    assert "/api/v1/jobs/" not in page.split(f'id="report-{rid}"')[1].split("</article>")[0]

    resp = decide(live.review, rid, "remove_message", "sexual_content")
    assert resp.status_code == 200 and resp.json()["released"] == [image_id], resp.text
    image = live.db.images.find_one({"_id": image_id})
    assert image["kept_until"] <= now() + timedelta(seconds=1)
    assert live.db[roommod.MESSAGES].find_one({"_id": pic})["state"] == "removed"


def test_mute_by_a_reviewer_and_close_only_by_an_admin(live: Live) -> None:
    reviewer, _ = live.create_reviewer()
    room_id, lines = chat(live, 2)
    bad = post(live, room_id, "LoudMouth", "shouting")
    rid = report(live, room_id, bad)
    other = report(live, room_id, lines[0], ReportReason.SPAM)

    muted = decide(reviewer, rid, "mute", "harassment")
    assert muted.status_code == 200, muted.text
    room = live.db[roommod.ROOMS].find_one({"_id": room_id})
    assert room["muted"] == ["loudmouth"]
    assert announced(live, bad, "mute")["nickname"] == "LoudMouth"
    assert live.db.audit.find_one({"action": "room.mute", "target": room_id})

    refused = decide(reviewer, other, "close", "spam")
    assert refused.status_code == 403 and refused.json()["code"] == "admin_only"
    assert live.db[roommod.ROOMS].find_one({"_id": room_id})["closed_at"] is None
    assert live.db[roommod.REPORTS].find_one({"_id": other})["state"] == "open"
    assert 'value="close"' not in reviewer.get("/rooms").text

    closing_report = report(live, room_id, post(live, room_id, "nick9", "more"))
    closed = decide(live.review, closing_report, "close", "harassment")
    assert closed.status_code == 200, closed.text
    assert closed.json()["also_settled"] == [other]
    room = live.db[roommod.ROOMS].find_one({"_id": room_id})
    assert room["closed_at"] is not None and room["closed_by"] == "moderator"
    assert room["closed_reason"] == "harassment"
    assert live.db[roommod.REPORTS].find_one({"_id": other})["state"] == "actioned"
    assert announced(live, closed.json()["message_id"], "close")["room_id"] == room_id
    csv = live.review.get("/audit/export.csv", params={"action": "room.close"})
    assert f"room.close,{room_id},harassment" in csv.text


def test_the_page_form_dismisses_and_shows_refusals(live: Live) -> None:
    room_id, lines = chat(live, 1)
    rid = report(live, room_id, lines[0], ReportReason.OTHER)
    html = {"accept": "text/html"}
    wrong = live.review.post(
        f"/rooms/{rid}/decision", data={"action": "dismiss", "reason": "spam"}, headers=html
    )
    assert wrong.status_code == 400 and "reason_mismatch" in wrong.text
    done = live.review.post(
        f"/rooms/{rid}/decision", data={"action": "dismiss", "reason": "other"}, headers=html
    )
    assert done.status_code == 303 and done.headers["location"] == "/rooms?done=dismiss"
    assert live.db[roommod.REPORTS].find_one({"_id": rid})["state"] == "dismissed"
    assert live.db[roommod.MESSAGES].find_one({"_id": lines[0]})["state"] == "visible"
    notice = live.review.get(done.headers["location"]).text
    assert "Decision recorded (dismiss)" in notice


def test_bad_inputs_and_no_session(live: Live) -> None:
    room_id, lines = chat(live, 1)
    rid = report(live, room_id, lines[0])
    cases = [
        ({"action": "frobnicate", "reason": "spam"}, 400, "unknown_action"),
        ({"action": "remove_message", "reason": "because"}, 400, "invalid_reason"),
        ({"action": "remove_message"}, 422, "invalid_request"),
        ({"action": "x" * 500, "reason": "spam"}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        resp = live.review.post(f"/api/v1/room-reports/{rid}/decision", json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), (body, resp.text)
    raw = live.review.post(
        f"/api/v1/room-reports/{rid}/decision",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 422 and raw.json()["code"] == "invalid_request"
    missing = decide(live.review, "no-such-report", "dismiss", "other")
    assert missing.status_code == 404 and missing.json()["code"] == "report_not_found"
    one = live.review.get("/api/v1/room-reports/no-such-report")
    assert one.status_code == 404 and one.json()["code"] == "report_not_found"
    paged = live.review.get("/api/v1/room-reports", params={"limit": 0})
    assert paged.status_code == 422
    assert live.db[roommod.REPORTS].find_one({"_id": rid})["state"] == "open"

    anon = live.review_anon
    assert anon.get("/api/v1/room-reports").status_code == 401
    assert anon.get("/api/v1/room-reports").json()["code"] == "login_required"
    page = anon.get("/rooms")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/rooms"
    post_ = anon.post(f"/api/v1/room-reports/{rid}/decision", json={"action": "dismiss"})
    assert post_.status_code == 401
    no_csrf = live.review.post(
        f"/api/v1/room-reports/{rid}/decision",
        json={"action": "dismiss", "reason": "other"},
        headers={"x-csrf-token": "wrong"},
    )
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "csrf_failed"
    assert live.db[roommod.REPORTS].find_one({"_id": rid})["state"] == "open"


def test_metrics_count_room_decisions_and_the_rooms_queue(live: Live) -> None:
    room_id, lines = chat(live, 1)
    rid = report(live, room_id, lines[0])
    assert decide(live.review, rid, "dismiss", "no_violation").status_code == 200
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = live.review.get("/metrics").text
        if 'chatpic_review_queue_depth{queue="rooms"}' in text:
            break
        time.sleep(0.5)
    assert 'chatpic_review_queue_depth{queue="rooms"}' in text
    assert 'chatpic_review_oldest_job_age_seconds{queue="rooms"}' in text
    assert 'chatpic_review_room_decisions_total{action="dismiss"}' in text


def test_a_settled_report_reopens_beside_a_newer_one(live: Live) -> None:
    """``reopen_room_report`` (a decision whose move failed) on the real database: back under
    the message's open key, or under a key of its own when a newer report holds that one."""
    room_id, lines = chat(live, 1)
    rid = report(live, room_id, lines[0])
    by = {"state": "actioned", "action": "mute", "by": "admin"}
    assert roommod.settle_room_report(live.db, rid, **by)
    assert not roommod.settle_room_report(live.db, rid, **by)
    stored = live.db[roommod.REPORTS].find_one({"_id": rid})
    assert roommod.reopen_room_report(live.db, stored)
    back = live.db[roommod.REPORTS].find_one({"_id": rid})
    assert back["state"] == "open" and back["open_key"] == f"open:{lines[0]}"
    assert "action" not in back and "decided_by" not in back

    assert roommod.settle_room_report(live.db, rid, **by)
    newer = report(live, room_id, lines[0], ReportReason.SPAM)
    assert newer != rid
    assert roommod.reopen_room_report(live.db, live.db[roommod.REPORTS].find_one({"_id": rid}))
    both = {d["_id"]: d["open_key"] for d in roommod.open_reports_in_room(live.db, room_id)}
    assert both == {rid: f"reopened:{rid}", newer: f"open:{lines[0]}"}
