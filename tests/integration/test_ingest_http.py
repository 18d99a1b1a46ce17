"""Ingest's HTTP edge against the real database: limits, rate limiting, hostile multipart."""

from __future__ import annotations

import io
import re

import httpx
from fastapi.testclient import TestClient
from PIL import Image, ImageChops

from services.ingest.app import Ports, create_app, upload_limiter
from services.ingest.settings import IngestSettings
from services.shared.kafka import MemoryPublisher
from services.shared.mongo import BlobStore
from services.shared.repos import ImageRepo
from tests.live import Live
from tests.unit.corpus import corpus_path


def small_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 100, 50)).save(out, "PNG")
    return out.getvalue()


def test_limits_are_published(live: Live) -> None:
    body = live.ingest.get("/api/v1/limits").json()
    assert body["max_bytes"] == 20 * 1024 * 1024
    assert body["max_width"] > 0 and body["max_pixels"] > 0
    assert {"jpeg", "png", "webp"} <= set(body["accepted_types"])
    assert body["link_options"]["max_views"][0] == 1
    assert body["upload_rate"]["uploads"] > 0


def test_rate_limit_answers_429_with_retry_after_and_stores_no_address(live: Live) -> None:
    settings = IngestSettings(
        mongo_uri=f"mongodb://127.0.0.1:{live.stack.ports.mongo}/",
        upload_rate_limit=2,
        upload_rate_window_s=600,
    )
    publisher = MemoryPublisher()
    ports = Ports(
        ImageRepo(live.db),
        BlobStore(live.db),
        publisher,
        upload_limiter(live.db["rate_limits"], settings),
    )
    app = create_app(settings, ports)
    before = live.db.images.count_documents({})
    with TestClient(app, client=("198.51.100.77", 40000)) as client:
        answers = [
            client.post("/api/v1/images", files={"file": ("a.png", small_png())}) for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [202, 202, 429]
        accepted = {a.json()["image_id"].encode() for a in answers[:2]}
        refused = client.post("/api/v1/images", files={"file": ("a.png", small_png())})
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        wait = int(refused.headers["retry-after"])
        assert 0 < wait <= 600
        # The sentence says how long, as the header does (the page shows the sentence).
        assert re.search(r"Try again in \d+ (second|minute)s?\.$", refused.json()["message"])
        form = client.post("/upload", files={"file": ("a.png", small_png())})
        assert form.status_code == 429 and "retry-after" in form.headers
    # Refused uploads store and publish nothing. (The stack's own ingest relay shares the
    # database and may announce one of the two accepted uploads before this app's relay.)
    assert live.db.images.count_documents({}) - before == 2
    assert {key for _, key, _ in publisher.records} <= accepted
    for doc in live.db["rate_limits"].find():
        assert "198.51.100.77" not in str(doc)


def test_C15_hostile_multipart_bodies_get_quick_4xx(live: Live) -> None:
    url = "/api/v1/images"
    many = {f"f{i}": "" for i in range(10_000)}
    resp = live.ingest.post(url, data=many, files={"file": ("a.png", small_png())})
    assert resp.status_code == 400 and resp.json()["code"] == "malformed_upload"

    resp = live.ingest.post(
        url, data={"note": "x" * 2_000_000}, files={"file": ("a.png", small_png())}
    )
    assert resp.status_code == 400 and resp.json()["code"] == "malformed_upload"

    two = [("file", ("a.png", small_png())), ("file", ("b.png", small_png()))]
    resp = live.ingest.post(url, files=two)
    assert resp.status_code == 400 and resp.json()["code"] == "malformed_upload"

    resp = live.ingest.post(url, content=small_png(), headers={"content-type": "image/png"})
    assert resp.status_code == 415 and resp.json()["code"] == "not_multipart"

    resp = live.ingest.post(
        url,
        content=b"--x\r\nContent-Disposition: form-data; name=file\r\n\r\nunterminated",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert 400 <= resp.status_code < 500 and resp.json()["code"]


def test_C16_client_file_names_are_never_used(live: Live) -> None:
    names = ["../../tmp/x.png", "/etc/passwd", "..\\\\x.png", "a\x00b\r\n.png", "n" * 300]
    for name in names:
        resp = live.ingest.post("/api/v1/images", files={"file": (name, small_png())})
        assert resp.status_code == 202, (name, resp.text)
        doc = live.db.images.find_one({"_id": resp.json()["image_id"]})
        assert doc is not None
        assert not any(name in str(v) for v in doc.values())


def test_unknown_routes_and_methods_get_json_codes(live: Live) -> None:
    assert live.ingest.get("/nope").json()["code"] == "not_found"
    resp = live.ingest.put("/api/v1/images")
    assert resp.status_code == 405 and resp.json()["code"] == "method_not_allowed"
    resp = live.ingest.get("/api/v1/images/" + "x" * 500)
    assert resp.status_code == 404 and resp.json()["code"] == "image_not_found"
    assert isinstance(live.ingest, httpx.Client)


def test_watermark_is_drawn_on_the_served_image_only(live: Live) -> None:
    photo = (corpus_path("Landscape_0.jpg")).read_bytes()
    plain = live.upload(photo).json()
    marked = live.ingest.post(
        "/api/v1/images", files={"file": ("p.jpg", photo)}, data={"watermark": "@chatpic"}
    ).json()
    blobs = BlobStore(live.db)

    def pixels(image_id: str) -> Image.Image:
        doc = live.db.images.find_one({"_id": image_id})
        return Image.open(io.BytesIO(blobs.get(doc["blob_id"]))).convert("L")

    a, b = pixels(plain["image_id"]), pixels(marked["image_id"])
    assert a.size == b.size
    w, h = a.size
    corner = (w * 3 // 4, h * 7 // 8, w, h)
    top_left = (0, 0, w // 4, h // 8)
    diff_corner = ImageChops.difference(a.crop(corner), b.crop(corner)).getbbox()
    diff_top = ImageChops.difference(a.crop(top_left), b.crop(top_left)).getextrema()
    assert diff_corner is not None  # the mark is there, bottom-right
    assert diff_top[1] <= 8  # and nowhere near the top-left

    bad = live.ingest.post(
        "/api/v1/images", files={"file": ("p.jpg", photo)}, data={"watermark": "x" * 41}
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_watermark"


def test_animation_is_kept_and_scanned(live: Live) -> None:
    resp = live.upload(corpus_path("iss634.gif").read_bytes(), "anim.gif")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["content_type"] == "image/webp" and body["animated"] and body["frames"] > 1
    assert live.wait_status(body["image_id"]) in ("cleared", "review")
    verdict = live.db.images.find_one({"_id": body["image_id"]})["verdict"]
    assert verdict["frames"] > 1  # more than the first frame was looked at


def test_a_cancelled_upload_is_a_quiet_client_abort(live: Live) -> None:
    """A phone that cancels (or loses signal) mid-upload: no traceback, no 5xx, counted."""
    import socket
    import time

    series = 'chatpic_ingest_uploads_total{code="upload_interrupted",outcome="refused"}'

    def count() -> float:
        for line in live.ingest.get("/metrics").text.splitlines():
            if line.startswith(series):
                return float(line.split()[-1])
        return 0.0

    before = count()
    head = (
        b"--b\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n"
        b"Content-Type: image/jpeg\r\n\r\n" + b"\xff\xd8\xff" + b"\0" * 5000
    )
    with socket.create_connection(("127.0.0.1", live.stack.ports.ingest), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/images HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 900000\r\n\r\n" + head
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while count() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count() == before + 1
    assert "ClientDisconnect" not in live.full_logs()
