"""The fail-closed SLO while the scanner is stopped (issues #8 and #9): uploads wait (pending,
announced to the broker), links refuse them and nothing is served, the oldest-pending age
grows; once a scanner is back every upload has exactly one verdict and bytes are served for
exactly the cleared ones, the image is shown in the room that holds it, the rooms consumer's
line for its image.scanned carries the upload's trace id, and the backlog gauges agree with
the database. Runs late: it stops and restarts the scanner."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.sync.client import ClientConnection

from deploy.local.stack import http_ok
from tests.integration.faults_helpers import (
    assert_one_verdict_each,
    assert_served_only_if_cleared,
    bytes_served,
    upload_photo,
    wait_final,
)
from tests.integration.links_helpers import unique_photo
from tests.integration.observability_helpers import (
    backlog_gauges_match_db,
    eventually,
    new_request_id,
    value,
    wait_for_line,
)
from tests.integration.test_rooms_live import make_room, member, wait_for
from tests.live import Live

OLDEST = "chatpic_ingest_oldest_pending_age_seconds"
PENDING = "chatpic_ingest_pending_images"
UNPUBLISHED = "chatpic_ingest_outbox_unpublished"


def frames_for(conn: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every frame the connection receives within ``seconds``."""
    frames, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(json.loads(conn.recv(left)))
        except TimeoutError:
            break
    return frames


def test_oldest_pending_grows_while_the_scanner_is_stopped(live: Live) -> None:
    # A scanner that has joined its group first: the local broker keeps a group rebalancing
    # for good when a member is stopped in the middle of its very first join (run alone, this
    # test would otherwise stop a scanner that had only just started).
    warm_id, _ = upload_photo(live, 880_099)
    assert live.wait_status(warm_id, timeout=60) == "cleared"
    live.stack.stop_process("scanner")
    restarted = False
    try:
        rid = new_request_id("obs-slo")
        uploaded_at = time.monotonic()
        resp = live.ingest.post(
            "/api/v1/images",
            files={"file": ("photo.jpg", unique_photo(880_100))},
            headers={"X-Request-ID": rid},
        )
        assert resp.status_code == 202
        image_id, owner_token = resp.json()["image_id"], resp.json()["owner_token"]
        served_before = bytes_served(live)
        more = [upload_photo(live, 880_200 + n) for n in range(3)]
        uploads = [(image_id, owner_token), *more]
        room = make_room(live)
        with (
            member(live, room, "waiting") as (conn, _),
            member(live, room, "onlooker") as (other, _),
        ):
            conn.send(
                json.dumps({"type": "image", "image_id": image_id, "owner_token": owner_token})
            )
            pending = wait_for(conn, "image_pending")

            eventually(lambda: (value(live.ingest, PENDING) or 0) >= 1, 15, "pending counted")
            # Announced (the broker took it): waiting on the scanner, not on the outbox.
            eventually(lambda: value(live.ingest, UNPUBLISHED) == 0, 15, "outbox drained")
            # The oldest pending image is at least as old as ours, and ours keeps ageing.
            first = value(live.ingest, OLDEST) or 0.0
            eventually(
                lambda: (value(live.ingest, OLDEST) or 0.0) >= first + 3, 15, "oldest age grows"
            )
            # At least our upload's age, give or take one refresh (5 s) and some slack.
            assert (value(live.ingest, OLDEST) or 0.0) >= time.monotonic() - uploaded_at - 7
            assert live.db.images.find_one({"_id": image_id})["status"] == "pending"
            # Links refuse every one of them while nothing has scanned them; nothing is served.
            for pending_id, token in uploads:
                link = live.links.post(
                    "/api/v1/links", json={"image_id": pending_id, "owner_token": token}
                )
                assert (link.status_code, link.json()["code"]) == (409, "not_scanned_yet")
            assert bytes_served(live) == served_before

            # Nobody in the room, nor anyone joining now, sees the unscanned image: only the
            # poster was told it is pending.
            seen = frames_for(other, 1.0)
            assert not [f for f in seen if f.get("type") == "image"], seen
            with member(live, room, "late") as (_, welcome):
                assert welcome["type"] == "welcome"
                assert pending["id"] not in json.dumps(welcome["history"])

            key = live.stack.start_service("scanner")
            restarted = True
            url = live.stack.ready_url(key)
            eventually(lambda: http_ok(url), 60, "scanner ready again")
            assert live.wait_status(image_id, timeout=60) == "cleared"
            wait_for(conn, "image", timeout=30, id=pending["id"])
            shown = wait_for(other, "image", timeout=30, id=pending["id"])
            assert live.rooms.get(shown["url"]).status_code == 200  # now it is served
            # Accepted = verdicts, one each; bytes are served for exactly the cleared ones.
            ids = [i for i, _ in uploads]
            wait_final(live, ids, timeout=60)
            assert set(assert_one_verdict_each(live, ids).values()) == {"cleared"}
            assert assert_served_only_if_cleared(live, uploads) == len(uploads)

        settled = wait_for_line(
            live,
            "rooms",
            lambda x: x.get("msg") == "image.scanned handled" and x.get("image_id") == image_id,
        )
        assert settled["trace_id"] == rid  # the upload's request id, through the scanner
        # Ours is no longer pending; the gauges say what the database holds (other tests leave
        # images pending on purpose, so not necessarily zero).
        eventually(lambda: backlog_gauges_match_db(live), 30, "backlog gauges match the database")
    finally:
        if not restarted:
            key = live.stack.start_service("scanner")
            deadline = time.monotonic() + 60
            while not http_ok(live.stack.ready_url(key)) and time.monotonic() < deadline:
                time.sleep(0.3)
