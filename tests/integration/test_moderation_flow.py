"""Hash banks, refusals, dead letters, idempotency and the re-publisher, on the real servers."""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from PIL import Image, ImageOps

from services.ingest.intake import IntakeLimits, sanitize
from services.ingest.uploads import accept_upload, relay_pending
from services.scanner.hashing import phash_hex
from services.scanner.imaging import load_normalized
from services.shared.events import IMAGE_UPLOADED, ImageUploaded, decode, encode, make_envelope
from services.shared.kafka import MemoryPublisher
from services.shared.mongo import BlobStore
from services.shared.repos import ImageRepo
from services.shared.tokens import token_hash
from tests.live import Live
from tests.unit.corpus import corpus_path

UPLOADS = "chatpic.image.uploaded"
DLQ = "chatpic.deadletter"


def end_offsets(live: Live, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=live.bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def read_topic(live: Live, topic: str, timeout_s: float = 10) -> list[object]:
    consumer = KafkaConsumer(
        bootstrap_servers=live.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=1500
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        records: list[object] = []
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            if not batch and records:
                break
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        consumer.close()


def recompressed_copy(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        small = img.convert("RGB").resize((img.width * 3 // 4, img.height * 3 // 4))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=55)
    return out.getvalue()


def test_resized_copy_of_a_banned_photo_is_blocked(live: Live) -> None:
    original = corpus_path("DSCN0021.jpg").read_bytes()
    banned_hash = phash_hex(load_normalized(original))
    resp = live.review.post(
        "/api/v1/banks/known-bad/entries",
        json={"hash": banned_hash, "signal_type": "phash", "reason": "test ban"},
    )
    assert resp.status_code == 201, resp.text

    resp = live.upload(recompressed_copy(original))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert live.wait_status(body["image_id"]) == "blocked"
    verdict = live.db.images.find_one({"_id": body["image_id"]})["verdict"]
    assert verdict["match"]["bank"] == "known-bad"
    assert verdict["match"]["distance"] <= 8
    assert "hash_match:known-bad" in verdict["reasons"]

    link = live.links.post(
        "/api/v1/links",
        json={"image_id": body["image_id"], "owner_token": body["owner_token"], "max_views": 5},
    )
    assert link.status_code == 403 and link.json()["code"] == "image_not_available"
    assert live.db.links.count_documents({"image_id": body["image_id"]}) == 0

    # Blocked bytes are not deleted: they move to the evidence vault, out of every serving path.
    deadline = time.monotonic() + 10
    doc = live.db.images.find_one({"_id": body["image_id"]})
    while not doc.get("evidence") and time.monotonic() < deadline:
        time.sleep(0.2)
        doc = live.db.images.find_one({"_id": body["image_id"]})
    assert doc["evidence"]["blob_id"] and doc["blob_id"] is None
    vault_id = ObjectId(doc["evidence"]["blob_id"])
    assert live.db["evidence.files"].count_documents({"_id": vault_id}) == 1
    assert doc["thumb_blob_id"] is None  # nothing servable is left in the blobs bucket
    url = f"/api/v1/evidence/{body['image_id']}"
    refused = live.review.get(url)
    assert refused.status_code == 400 and refused.json()["code"] == "reason_required"
    seen = live.review.get(url, params={"reason": "appeal check"})
    assert seen.status_code == 200 and seen.content.startswith(b"\xff\xd8\xff")
    assert seen.headers["cache-control"] == "private, no-store"
    audit = list(live.db.audit.find({"target": body["image_id"], "action": "evidence.view"}))
    assert len(audit) == 1 and audit[0]["reason"] == "appeal check"


@pytest.mark.parametrize("status", ["pending", "review", "blocked", "removed", "bogus"])
def test_no_bytes_for_any_status_but_cleared_even_with_a_forged_link(
    live: Live, status: str
) -> None:
    """Fail closed at reveal time: a link document alone never releases bytes."""
    salt = live.stack.salt().encode()
    image = sanitize(corpus_path("hopper.webp").read_bytes(), IntakeLimits())
    far = datetime.now(UTC) + timedelta(days=1)
    image_id = uuid.uuid4().hex
    live.db.images.insert_one(  # written directly: no relay or scanner ever touches it
        {
            "_id": image_id,
            "status": status,
            "blob_id": BlobStore(live.db).put(image.data, image.content_type),
            "content_type": image.content_type,
            "created_at": datetime.now(UTC),
            "publish": {"last_at": far, "published_at": far},
        }
    )
    token = "forged-" + uuid.uuid4().hex
    live.db.links.insert_one(
        {
            "_id": token_hash(salt, token),
            "link_id": uuid.uuid4().hex,
            "image_id": image_id,
            "expires_at": far,
            "alive_until": far,
            "max_views": 5,
            "remaining": 5,
            "views": 0,
        }
    )
    resp = live.links.post(f"/s/{token}/reveal")
    assert resp.status_code == 451 and resp.json()["code"] == "removed"
    assert resp.headers["content-type"].startswith("application/json")
    assert live.db.links.find_one({"_id": token_hash(salt, token)})["views"] == 0
    assert live.links.get(f"/s/{token}").status_code == 451


def test_bad_files_are_refused_and_nothing_is_published(live: Live) -> None:
    before_docs = live.db.images.count_documents({})
    before_offsets = end_offsets(live, UPLOADS)
    cases = [
        ("truncated_jpeg.jpg", 422, "corrupt_image"),
        ("test-ole-file.doc", 415, "unsupported_type"),
        ("notjpeg.jpg", 400, "empty_file"),
    ]
    for name, status, code in cases:
        resp = live.upload(corpus_path(name).read_bytes(), "innocent.jpg")
        assert resp.status_code == status, (name, resp.text)
        body = resp.json()
        assert body["code"] == code and body["message"], name
    html = live.upload(b"<html><script>alert(1)</script></html>", "x.png")
    assert html.status_code == 415 and html.json()["code"] == "unsupported_type"
    missing = live.ingest.post("/api/v1/images", files={"other": ("a.jpg", b"x")})
    assert missing.status_code == 400 and missing.json()["code"] == "missing_file"
    as_text = live.ingest.post("/api/v1/images", files={"file": (None, "text, not a file")})
    assert as_text.status_code == 400 and as_text.json()["code"] == "missing_file"
    not_form = live.ingest.post("/api/v1/images", data={"nothing": "here"})
    assert not_form.status_code == 415 and not_form.json()["code"] == "not_multipart"

    assert live.db.images.count_documents({}) == before_docs
    assert end_offsets(live, UPLOADS) == before_offsets


def test_C21_undecodable_records_go_to_the_dead_letter_topic(live: Live) -> None:
    producer = KafkaProducer(bootstrap_servers=live.bootstrap)
    marker = uuid.uuid4().hex
    producer.send(UPLOADS, key=marker.encode(), value=b"{not json")
    wrong_schema = {"type": "image.uploaded", "version": 1, "payload": {"image": 1}}
    producer.send(UPLOADS, key=marker.encode(), value=json.dumps(wrong_schema).encode())
    producer.flush()
    producer.close()

    deadline = time.monotonic() + 30
    reasons: list[str] = []
    while time.monotonic() < deadline and len(reasons) < 2:
        reasons = [
            dict(r.headers)["dlq_reason"].decode()
            for r in read_topic(live, DLQ)
            if r.key == marker.encode()
        ]
        time.sleep(0.5)
    assert sorted(reasons) == ["invalid_json", "missing_fields"]
    metrics = live.scanner.get("/metrics").text
    assert 'chatpic_scanner_dead_letters_total{reason="invalid_json"}' in metrics

    # The scanner moved on: a good upload after the poison still gets its verdict.
    resp = live.upload(corpus_path("Landscape_0.jpg").read_bytes())
    assert live.wait_status(resp.json()["image_id"]) == "cleared"


def test_redelivered_record_does_not_change_the_verdict(live: Live) -> None:
    resp = live.upload(corpus_path("DSCN0010.jpg").read_bytes())
    image_id = resp.json()["image_id"]
    assert live.wait_status(image_id) == "cleared"
    first = live.db.images.find_one({"_id": image_id})

    env = make_envelope(
        IMAGE_UPLOADED,
        image_id,
        ImageUploaded(image_id=image_id, content_type="image/jpeg", size=first["size"]),
    )
    producer = KafkaProducer(bootstrap_servers=live.bootstrap)
    for _ in range(3):
        producer.send(UPLOADS, key=image_id.encode(), value=encode(env))
    producer.flush()
    producer.close()

    deadline = time.monotonic() + 20
    scanned = []
    while time.monotonic() < deadline and len(scanned) < 4:
        scanned = [
            r for r in read_topic(live, "chatpic.image.scanned") if r.key == image_id.encode()
        ]
    assert len(scanned) >= 4  # the original verdict plus one re-announcement per duplicate
    after = live.db.images.find_one({"_id": image_id})
    assert after["scanned_at"] == first["scanned_at"]
    assert after["verdict"] == first["verdict"]
    assert "chatpic_scanner_duplicates_total" in live.scanner.get("/metrics").text


def test_outbox_relay_retries_refused_publishes_without_giving_up(live: Live) -> None:
    """Against a database of its own (the running services never see it)."""
    db = live.mongo["chatpic_relay_test"]
    images = ImageRepo(db)
    image = sanitize(corpus_path("Landscape_1.jpg").read_bytes(), IntakeLimits())
    accepted = accept_upload(
        image, images=images, blobs=BlobStore(db), salt=live.stack.salt().encode()
    )
    doc = images.get(accepted.image_id)
    assert doc is not None and doc["status"] == "pending"
    assert doc["publish"] == {"attempts": 0, "failures": 0, "last_at": None, "published_at": None}

    # A long outage: every pass is refused, nothing is lost, nobody is sent to review.
    down = MemoryPublisher(fail=True)
    for _ in range(30):
        relay_pending(
            images=images, publisher=down, older_than_s=30, max_attempts=20, retry_after_s=0
        )
    doc = images.get(accepted.image_id)
    assert doc is not None and doc["status"] == "pending"
    assert doc["publish"]["failures"] == 30 and doc["publish"]["attempts"] == 0

    # Back: the next pass announces it once, with a valid envelope keyed by the image id.
    up = MemoryPublisher()
    sent = relay_pending(
        images=images, publisher=up, older_than_s=30, max_attempts=20, retry_after_s=0
    )
    assert sent == 1 and len(up.records) == 1
    topic, key, value = up.records[0]
    assert topic == IMAGE_UPLOADED.topic and key == accepted.image_id.encode()
    assert decode(value, IMAGE_UPLOADED).payload.image_id == accepted.image_id
    assert (
        relay_pending(
            images=images, publisher=up, older_than_s=30, max_attempts=20, retry_after_s=0
        )
        == 0
    )  # acknowledged: not again until it is stale
    live.mongo.drop_database("chatpic_relay_test")


def test_a_stored_upload_is_announced_without_any_request_waiting(live: Live) -> None:
    """An image stored with no publish at all (a crash right after the insert) is picked up by
    the running ingest's relay and scanned."""
    image = sanitize(corpus_path("Landscape_2.jpg").read_bytes(), IntakeLimits())
    accepted = accept_upload(image, images=ImageRepo(live.db), blobs=BlobStore(live.db), salt=b"x")
    assert live.wait_status(accepted.image_id, timeout=30) == "cleared"


def test_C14_oversized_uploads_are_refused_early(live: Live) -> None:
    """Declared too large: 413 before the body is read. Chunked and too large: cut off."""
    import socket

    port = live.stack.ports.ingest
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/images HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 900000000\r\n\r\n"
        )
        reply = b""  # answered without sending a single body byte
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b'"code":"too_large"' in reply

    def chunks():  # no Content-Length: streamed, counted, cut off past the limit
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n"
        for _ in range(30):
            yield b"\0" * (1024 * 1024)

    before = live.db.images.count_documents({})
    resp = live.ingest.post(
        "/api/v1/images",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert resp.status_code == 413 and resp.json()["code"] == "too_large"
    assert resp.json()["maximum"] == 20 * 1024 * 1024
    assert live.db.images.count_documents({}) == before


def test_banning_a_hash_takes_down_live_copies_at_once(live: Live) -> None:
    resp = live.upload(corpus_path("Reconyx_HC500_Hyperfire.jpg").read_bytes())
    body = resp.json()
    assert live.wait_status(body["image_id"]) == "cleared"
    link = live.links.post(
        "/api/v1/links",
        json={"image_id": body["image_id"], "owner_token": body["owner_token"], "max_views": 3},
    ).json()
    assert live.links.post(f"/s/{link['token']}/reveal").status_code == 200

    phash = live.db.images.find_one({"_id": body["image_id"]})["verdict"]["hashes"]["phash"]
    flipped = f"{int(phash, 16) ^ 0b101:016x}"  # two bits away: still the same picture
    ban = live.review.post(
        "/api/v1/banks/retro/entries", json={"hash": flipped, "reason": "reported and confirmed"}
    )
    assert ban.status_code == 201 and body["image_id"] in ban.json()["taken_down"]

    doc = live.db.images.find_one({"_id": body["image_id"]})
    assert doc["status"] == "removed" and doc["removal"]["reason"] == "hash_match:retro"
    announced = [r.key for r in read_topic(live, "chatpic.image.takedown")]
    assert body["image_id"].encode() in announced
    gone = live.links.post(f"/s/{link['token']}/reveal")
    assert gone.status_code == 451 and gone.json()["code"] == "removed"
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 1
    page = live.links.get(f"/s/{link['token']}", headers={"accept": "text/html"})
    assert page.status_code == 451 and b"\xff\xd8" not in page.content


def test_evidence_is_purged_after_its_retention(live: Live) -> None:
    from services.review.evidence import purge_expired
    from services.shared.repos import AuditRepo

    vault = BlobStore(live.db, "evidence")
    vault_id = vault.put(b"\xff\xd8\xffevidence", "image/jpeg")
    image_id = uuid.uuid4().hex
    past = datetime.now(UTC) - timedelta(days=1)
    live.db.images.insert_one(
        {
            "_id": image_id,
            "status": "blocked",
            "blob_id": None,
            "created_at": past,
            "evidence": {
                "blob_id": vault_id,
                "thumb_blob_id": None,
                "content_type": "image/jpeg",
                "expires_at": past,
                "purged_at": None,
            },
        }
    )
    purged = purge_expired(images=ImageRepo(live.db), vault=vault, audit=AuditRepo(live.db))
    assert purged >= 1
    assert live.db["evidence.files"].count_documents({"_id": ObjectId(vault_id)}) == 0
    doc = live.db.images.find_one({"_id": image_id})
    assert doc["evidence"]["purged_at"] is not None and doc["status"] == "blocked"
    assert live.db.audit.count_documents({"target": image_id, "action": "evidence.purge"}) == 1
    gone = live.review.get(f"/api/v1/evidence/{image_id}", params={"reason": "look"})
    assert gone.status_code == 404 and gone.json()["code"] == "evidence_not_found"


def test_pdq_bank_entry_is_enforced_live_and_its_removal_too(live: Live) -> None:
    from services.scanner.hashing import pdq_hex

    original = corpus_path("canon_hdr_NO.jpg").read_bytes()
    digest, quality = pdq_hex(load_normalized(original))
    assert quality >= 50
    with Image.open(io.BytesIO(original)) as img:
        out = io.BytesIO()
        upright = ImageOps.exif_transpose(img)  # the photo as people see it
        upright.convert("L").save(out, "JPEG", quality=70)  # a grayscale, re-compressed copy
    copy = out.getvalue()

    added = live.review.post(
        "/api/v1/banks/industry/entries",
        json={"hash": digest, "signal_type": "pdq", "reason": "shared list"},
    )
    assert added.status_code == 201, added.text
    first = live.upload(copy).json()
    assert live.wait_status(first["image_id"]) == "blocked"
    match = live.db.images.find_one({"_id": first["image_id"]})["verdict"]["match"]
    assert match["signal"] == "pdq" and match["bank"] == "industry"

    removed = live.review.delete(f"/api/v1/banks/entries/{added.json()['entry_id']}")
    assert removed.status_code == 204
    second = live.upload(copy).json()
    assert live.wait_status(second["image_id"]) == "cleared"
    metrics = live.scanner.get("/metrics").text
    assert "chatpic_scanner_bank_change_enforced_seconds_count" in metrics
