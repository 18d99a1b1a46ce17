"""Reports from a room can hide a photo at once: once CHATPIC_ROOMS_AUTO_HIDE_REPORTERS (3)
distinct people reported a cleared photo, it is held for review everywhere, it leaves the room,
and the rooms service counts the hide (``chatpic_rooms_auto_hides_total``) exactly once."""

from __future__ import annotations

import json

import httpx

from services.rooms.settings import RoomsSettings
from tests.integration.faults_helpers import metric_total
from tests.integration.links_helpers import cleared_upload, unique_photo
from tests.integration.test_rooms_live import make_room, member, wait_for
from tests.live import Live

AUTO_HIDES = "chatpic_rooms_auto_hides_total"
REPORTERS = ("127.0.0.221", "127.0.0.222", "127.0.0.223", "127.0.0.224")  # one person each


def report_from(live: Live, source: str, url: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=str(live.rooms.base_url), transport=transport, timeout=30) as c:
        return c.post(url, json={"reason": "harassment"})


def test_reports_that_hide_a_room_photo_are_counted(live: Live) -> None:
    threshold = RoomsSettings.model_fields["rooms_auto_hide_reporters"].default
    assert threshold == 3 and "CHATPIC_ROOMS_AUTO_HIDE_REPORTERS" not in live.stack.extra_env
    image_id, token = cleared_upload(live, unique_photo(7621))
    room = make_room(live)
    with member(live, room, "poster") as (a, _), member(live, room, "viewer") as (b, _):
        a.send(json.dumps({"type": "image", "image_id": image_id, "owner_token": token}))
        pending = wait_for(a, "image_pending")
        shown = wait_for(b, "image", id=pending["id"])
        url = f"/api/v1/rooms/{room['slug']}/messages/{pending['id']}/report"
        before = metric_total(live.rooms, AUTO_HIDES)

        for source in REPORTERS[: threshold - 1]:
            assert report_from(live, source, url).status_code == 201
        assert metric_total(live.rooms, AUTO_HIDES) == before  # not enough people yet
        assert live.db.images.find_one({"_id": image_id})["status"] == "cleared"

        assert report_from(live, REPORTERS[threshold - 1], url).status_code == 201
        assert metric_total(live.rooms, AUTO_HIDES) == before + 1
        image = live.db.images.find_one({"_id": image_id})
        assert image["status"] == "review" and image["hidden_by"] == "reports"
        job = live.db.review_jobs.find_one({"image_id": image_id, "state": "open"})
        assert job is not None and job["auto_hidden"] is True

        # It leaves the room for everyone; a later report no longer finds it nor counts.
        for conn in (a, b):
            wait_for(conn, "removed", timeout=15, id=pending["id"])
        assert live.rooms.get(shown["url"]).status_code in (404, 451)
        late = report_from(live, REPORTERS[threshold], url)
        assert late.status_code == 404 and late.json()["code"] == "message_not_found"
        assert metric_total(live.rooms, AUTO_HIDES) == before + 1
