"""End to end through the real broker, database, scanner model and services."""

from __future__ import annotations

import io
import time

from PIL import Image

from tests.live import Live
from tests.unit.corpus import corpus_path

JPEG_MAGIC = b"\xff\xd8\xff"
GPS_IFD = 0x8825


def assert_no_metadata(data: bytes) -> None:
    for marker in (b"Exif", b"http://ns.adobe.com/xap", b"Photoshop 3.0", b"NIKON"):
        assert marker not in data, f"{marker!r} survived in the served bytes"
    with Image.open(io.BytesIO(data)) as img:
        assert not img.getexif(), "EXIF survived"
        assert not img.getexif().get_ifd(GPS_IFD), "GPS survived"
        assert "exif" not in img.info and "xmp" not in img.info


def test_camera_photo_becomes_a_one_view_link(live: Live) -> None:
    original = corpus_path("DSCN0010.jpg").read_bytes()
    with Image.open(io.BytesIO(original)) as img:  # the fixture really carries a location
        assert img.getexif().get_ifd(GPS_IFD)

    resp = live.upload(original, "DSCN0010.jpg")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    image_id, owner_token = body["image_id"], body["owner_token"]
    assert body["status_url"] == f"/api/v1/images/{image_id}"
    assert len(owner_token) >= 22  # >= 128 bits, url-safe base64

    stored = live.db.images.find_one({"_id": image_id})
    assert stored is not None and owner_token not in str(stored)

    assert live.wait_status(image_id) == "cleared"
    verdict = live.db.images.find_one({"_id": image_id})["verdict"]
    assert verdict["model"]["name"] == "nudenet-320n" and verdict["model"]["version"]
    assert verdict["nsfw_score"] < 0.45 and len(verdict["hashes"]["phash"]) == 16

    resp = live.links.post(
        "/api/v1/links", json={"image_id": image_id, "owner_token": owner_token, "max_views": 1}
    )
    assert resp.status_code == 201, resp.text
    link = resp.json()
    token = link["token"]
    assert len(token) >= 22
    assert live.db.links.count_documents({}) >= 1
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 0
    for doc in live.db.links.find():
        assert token not in str(doc)  # only its hash is stored

    share = live.links.get(f"/s/{token}")
    assert share.status_code == 200
    assert share.headers["content-type"].startswith("text/html")
    assert JPEG_MAGIC not in share.content and b"1 view left" in share.content
    head = live.links.head(f"/s/{token}")
    assert head.status_code == 200 and head.content == b""
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 0

    first = live.view(token)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["cache-control"] == "private, no-store"
    assert first.content.startswith(JPEG_MAGIC) and first.content != original
    assert_no_metadata(first.content)
    with Image.open(io.BytesIO(first.content)) as img:
        assert img.size == (640, 480)

    second = live.links.post(f"/s/{token}/reveal")
    assert second.status_code == 410
    assert second.json()["code"] == "used_up"
    assert JPEG_MAGIC not in second.content
    assert live.links.get(f"/s/{token}").status_code == 410
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 1

    logs = live.full_logs()
    assert '"route": "/s/{token}/reveal"' in logs  # requests are logged, by route template
    assert '"route": "/v/{ticket}/image"' in logs
    assert token not in logs and owner_token not in logs


def test_unknown_link_and_wrong_owner_token(live: Live) -> None:
    assert live.links.post("/s/not-a-real-token/reveal").status_code == 404
    resp = live.links.post(
        "/api/v1/links", json={"image_id": "0" * 32, "owner_token": "x" * 32, "max_views": 1}
    )
    assert resp.status_code == 404 and resp.json()["code"] == "image_not_found"


def test_link_refused_while_pending(live: Live) -> None:
    """An image with no verdict yet gets no link (fail closed), then gets one once cleared."""
    resp = live.upload(corpus_path("Landscape_0.jpg").read_bytes())
    body = resp.json()
    req = {"image_id": body["image_id"], "owner_token": body["owner_token"], "max_views": 2}
    early = live.links.post("/api/v1/links", json=req)
    if early.status_code == 409:  # the scanner had not finished: refused with a reason
        assert early.json()["code"] == "not_scanned_yet"
    assert live.wait_status(body["image_id"]) == "cleared"
    assert live.links.post("/api/v1/links", json=req).status_code == 201


def test_link_expires_on_time_and_options_are_validated(live: Live) -> None:
    resp = live.upload(corpus_path("Landscape_0.jpg").read_bytes())
    body = resp.json()
    assert live.wait_status(body["image_id"]) == "cleared"
    base = {"image_id": body["image_id"], "owner_token": body["owner_token"]}

    for bad, code in [
        ({"max_views": 0}, "invalid_request"),
        ({"max_views": 10**6}, "max_views_too_high"),
        ({"expires_in": -5}, "invalid_request"),
        ({"expires_in": 10**9}, "expires_in_too_long"),
        ({"max_views": "many"}, "invalid_request"),
        ({"max_views": True}, "invalid_request"),
        ({"max_views": "5"}, "invalid_request"),
        ({"expires_in": 0}, "invalid_request"),
    ]:
        resp = live.links.post("/api/v1/links", json={**base, **bad})
        assert 400 <= resp.status_code < 500 and resp.json()["code"] == code, (bad, resp.text)

    link = live.links.post("/api/v1/links", json={**base, "expires_in": 1, "max_views": 5})
    assert link.status_code == 201
    token = link.json()["token"]
    time.sleep(1.2)
    resp = live.links.post(f"/s/{token}/reveal")
    assert resp.status_code == 410 and resp.json()["code"] == "expired"
    assert live.db.links.find_one({"link_id": link.json()["link_id"]})["views"] == 0
