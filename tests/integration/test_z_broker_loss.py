"""The in-memory broker dies and comes back empty: uploads are still accepted (quickly), nothing
is served unscanned meanwhile, and every upload reaches a verdict once the broker is back."""

from __future__ import annotations

import time

from tests.live import Live
from tests.unit.corpus import corpus_path


def test_uploads_survive_losing_the_broker(live: Live) -> None:
    live.stack.stop_process("broker")
    ids: list[str] = []
    try:
        timings = []
        for name in ("Landscape_0.jpg", "DSCN0010.jpg", "hopper.webp"):
            start = time.monotonic()
            resp = live.upload(corpus_path(name).read_bytes())
            timings.append(time.monotonic() - start)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["image_id"])
        assert max(timings) < 3.0  # no request waits for the broker (the outbox relay does)
        body = ids[0], live.db.images.find_one({"_id": ids[0]})
        assert body[1]["status"] == "pending"
        link = live.links.post(
            "/api/v1/links",
            json={"image_id": ids[0], "owner_token": "x" * 32, "max_views": 1},
        )
        assert link.status_code == 404  # no owner key: and nothing pending is ever linkable
    finally:
        live.stack.start_broker()  # empty: no topics, no offsets, no messages
        live.stack.create_topics()

    for image_id in ids:
        assert live.wait_status(image_id, timeout=90) in ("cleared", "review")
    docs = list(live.db.images.find({"_id": {"$in": ids}}))
    assert all(d["publish"]["attempts"] >= 1 for d in docs)  # announced after the restart
