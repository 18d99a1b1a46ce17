"""Observability on the live stack: request ids in and out, the upload's trace id in the
scanner's log, a reviewer's request id reaching links and rooms through image.takedown, the
pipeline's metrics (consumer lag, backlog, dead letters, dependencies, build) and /readyz."""

from __future__ import annotations

import json
import re
import time

from services.shared.events import IMAGE_SCANNED, IMAGE_UPLOADED, topic_name
from services.shared.kafka import KafkaPublisher
from services.shared.settings import CommonSettings
from tests.integration.links_helpers import make_link, unique_photo
from tests.integration.observability_helpers import (
    SERVICES,
    backlog_gauges_match_db,
    eventually,
    log_lines,
    new_request_id,
    samples,
    value,
    wait_for_line,
)
from tests.integration.test_review_queues import decided, open_job, report, take
from tests.integration.test_rooms_live import make_room, member, wait_for
from tests.live import Live


def test_an_uploads_request_id_is_its_trace_through_the_pipeline(live: Live) -> None:
    rid = new_request_id()
    resp = live.ingest.post(
        "/api/v1/images",
        files={"file": ("photo.jpg", unique_photo(880_001))},
        headers={"X-Request-ID": rid},
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["x-request-id"] == rid
    image_id = resp.json()["image_id"]
    assert live.db.images.find_one({"_id": image_id})["trace_id"] == rid
    assert live.wait_status(image_id) == "cleared"

    verdict = wait_for_line(
        live,
        "scanner",
        lambda x: x.get("msg") == "verdict stored" and x.get("image_id") == image_id,
    )
    assert verdict["trace_id"] == rid
    # Every scanner line about this record carries it, and no other record's lines do.
    mine = [x for x in log_lines(live, "scanner") if x.get("image_id") == image_id]
    assert mine and all(x.get("trace_id") == rid for x in mine)
    # ...and the rooms consumer of image.scanned, one hop further.
    scanned = wait_for_line(
        live,
        "rooms",
        lambda x: x.get("msg") == "image.scanned handled" and x.get("image_id") == image_id,
    )
    assert scanned["trace_id"] == rid and scanned["verdict"] == "cleared"
    ingest = log_lines(live, "ingest")
    accepted = [x for x in ingest if x.get("msg") == "upload accepted"]
    assert [x["trace_id"] for x in accepted if x.get("image_id") == image_id] == [rid]
    access = [x for x in ingest if x.get("msg") == "request" and x.get("request_id") == rid]
    assert [(x["route"], x["status"]) for x in access] == [("/api/v1/images", "2xx")]

    # A malformed id is replaced, never echoed.
    bad = live.ingest.get("/api/v1/limits", headers={"X-Request-ID": "no spaces allowed"})
    assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])


def test_a_reviewers_request_id_reaches_links_and_rooms_through_the_takedown(
    live: Live,
) -> None:
    body = live.upload(unique_photo(880_002), "photo.jpg").json()
    image = (str(body["image_id"]), str(body["owner_token"]))
    assert live.wait_status(image[0]) == "cleared"
    make_link(live, image, max_views=5)
    room = make_room(live)
    with member(live, room, "poster") as (conn, _):
        conn.send(json.dumps({"type": "image", "image_id": image[0], "owner_token": image[1]}))
        pending = wait_for(conn, "image_pending")
        wait_for(conn, "image", id=pending["id"])

        report(live, image[0], "spam")
        job = open_job(live, image[0])
        take(live.review, job["_id"])
        rid = new_request_id("obs-review")
        live.review.headers["X-Request-ID"] = rid
        try:
            decided(live.review, job["_id"], "remove", "spam")
        finally:
            del live.review.headers["X-Request-ID"]
        wait_for(conn, "removed", id=pending["id"])

    # One line per event in each consumer (what the event itself changed may have been done
    # first by the links sweeper or the rooms refresh, from MongoDB).
    for service in ("links", "rooms"):
        handled = wait_for_line(
            live,
            service,
            lambda x: x.get("msg") == "image.takedown handled" and x.get("image_id") == image[0],
        )
        assert handled["trace_id"] == rid, service
    review = [x for x in log_lines(live, "review") if x.get("request_id") == rid]
    assert any(x.get("msg") == "request" and x.get("status") == "2xx" for x in review)


def test_pipeline_metrics_lag_backlog_dependencies_and_build(live: Live) -> None:
    resp = live.upload(unique_photo(880_003), "photo.jpg")
    assert resp.status_code == 202
    assert live.wait_status(resp.json()["image_id"]) == "cleared"

    # The scanner's group: one series per partition of image.uploaded, back to 0 once every
    # record is handled (the scanner commits each record after its verdict).
    uploaded = topic_name("chatpic.", IMAGE_UPLOADED.topic)

    def scanner_lag() -> list[tuple[dict[str, str], float]]:
        return [
            (labels, v)
            for labels, v in samples(live.scanner, "chatpic_kafka_consumer_lag")
            if labels.get("group") == "chatpic-scanner"
        ]

    eventually(lambda: len(scanner_lag()) == 6, 15, "lag series for every partition")
    assert {labels["topic"] for labels, _ in scanner_lag()} == {uploaded}
    eventually(lambda: sum(v for _, v in scanner_lag()) == 0, 20, "scanner lag back to 0")

    groups = {
        "links": {"chatpic-links-takedowns"},
        "rooms": {"chatpic-rooms-scans", "chatpic-rooms-takedowns"},
    }
    for service, wanted in groups.items():
        client = getattr(live, service)
        eventually(
            lambda c=client, w=wanted: (
                w <= {lb["group"] for lb, _ in samples(c, "chatpic_kafka_consumer_lag")}
            ),
            15,
            f"{service} reports its groups' lag",
        )

    # The backlog gauges say what the database holds (our upload no longer pending in it).
    assert live.db.images.find_one({"_id": resp.json()["image_id"]})["status"] == "cleared"
    eventually(lambda: backlog_gauges_match_db(live), 30, "backlog gauges match the database")

    for service in SERVICES:
        client = getattr(live, service)
        up = {
            lb["dependency"]: v
            for lb, v in samples(client, "chatpic_dependency_up")
            if lb.get("service") == service
        }
        assert up.get("database") == 1 and up.get("broker") == 1, (service, up)
        build = [lb for lb, v in samples(client, "chatpic_build_info") if v == 1]
        assert [lb["service"] for lb in build] == [service] and build[0]["version"]
    scanner_up = samples(live.scanner, "chatpic_dependency_up")
    assert ({"service": "scanner", "dependency": "model"}, 1.0) in scanner_up


def test_readyz_shape_on_every_service(live: Live) -> None:
    for service in SERVICES:
        client = getattr(live, service)
        started = time.monotonic()
        resp = client.get("/readyz")
        assert time.monotonic() - started < 1.5
        assert resp.status_code == 200, (service, resp.text)
        body = resp.json()
        assert set(body) == {"ready", "checks", "degraded"}
        assert body["ready"] is True and body["degraded"] == []
        if service == "scanner":
            assert body["checks"] == {
                "database": True,
                "broker": True,
                "model": True,
                "consumer": True,
            }
        else:
            assert body["checks"] == {"database": True, "broker": True}
            assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])


def test_dead_letters_are_counted_by_source_topic_and_reason(live: Live) -> None:
    settings = CommonSettings(kafka_bootstrap=live.bootstrap)
    scanned = topic_name("chatpic.", IMAGE_SCANNED.topic)
    uploaded = topic_name("chatpic.", IMAGE_UPLOADED.topic)

    def dead(client_name: str, topic: str) -> float:
        client = getattr(live, client_name)
        found = value(
            client, "chatpic_kafka_dead_letters_total", source_topic=topic, reason="invalid_json"
        )
        return found or 0.0

    before = dead("scanner", uploaded), dead("rooms", scanned)
    trace = new_request_id("obs-poison")
    publisher = KafkaPublisher(settings)
    try:
        headers = [("trace_id", trace.encode())]
        publisher.publish_raw(IMAGE_UPLOADED.topic, b"poison", b"{not json", headers)
        publisher.publish_raw(IMAGE_SCANNED.topic, b"poison", b"{not json", headers)
    finally:
        publisher.close()
    eventually(lambda: dead("scanner", uploaded) == before[0] + 1, 20, "scanner dead letter")
    # The rooms consumers used to skip what they could not read; it is dead-lettered now.
    eventually(lambda: dead("rooms", scanned) == before[1] + 1, 20, "rooms dead letter")
    line = wait_for_line(
        live,
        "rooms",
        lambda x: x.get("msg") == "record dead-lettered" and x.get("trace_id") == trace,
    )
    assert line["reason"] == "invalid_json"
