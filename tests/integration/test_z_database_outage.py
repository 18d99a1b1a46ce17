"""The database goes away and comes back: services answer 503 (never 500) meanwhile, readiness
says so quickly, and everything recovers without a restart. Runs last (it restarts the DB)."""

from __future__ import annotations

import time

from tests.live import Live
from tests.unit.corpus import corpus_path

HTML = {"accept": "text/html"}


def test_database_outage_gives_503_then_recovers(live: Live) -> None:
    live.stack.stop_process("database")
    try:
        start = time.monotonic()
        ready = live.links.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        assert time.monotonic() - start < 5

        api = live.links.post("/s/some-token/reveal")
        assert api.status_code == 503 and api.json()["code"] == "unavailable"
        assert api.headers["retry-after"]
        page = live.links.get("/s/some-token", headers=HTML)
        assert page.status_code == 503 and "text/html" in page.headers["content-type"]
        assert "unavailable" in page.text
        upload = live.upload(corpus_path("hopper.webp").read_bytes())
        assert upload.status_code == 503 and upload.json()["code"] == "unavailable"
        assert live.ingest.get("/readyz").status_code == 503
        assert live.scanner.get("/readyz").status_code == 503
    finally:
        live.stack.start_database()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and live.ingest.get("/readyz").status_code != 200:
        time.sleep(0.5)
    for client in (live.ingest, live.links, live.review, live.scanner):
        assert client.get("/readyz").status_code == 200
    resp = live.upload(corpus_path("Landscape_0.jpg").read_bytes())
    assert resp.status_code == 202
    assert live.wait_status(resp.json()["image_id"]) == "cleared"
    assert "unhandled error" not in live.logs()
