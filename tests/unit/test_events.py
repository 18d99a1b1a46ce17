"""Envelope encoding: round trip, and every defect gets a reason (the dead-letter contract)."""

from __future__ import annotations

import json

import pytest

from services.shared.events import (
    IMAGE_SCANNED,
    IMAGE_UPLOADED,
    TOPICS,
    EnvelopeError,
    ImageUploaded,
    decode,
    encode,
    make_envelope,
)


def uploaded() -> bytes:
    payload = ImageUploaded(image_id="abc", content_type="image/jpeg", size=10)
    return encode(make_envelope(IMAGE_UPLOADED, "abc", payload, trace_id="t1"))


def test_round_trip_keeps_every_field() -> None:
    raw = uploaded()
    env = decode(raw, IMAGE_UPLOADED)
    assert env.type == "image.uploaded" and env.version == 1 and env.key == "abc"
    assert env.trace_id == "t1" and len(env.id) == 32
    assert env.payload == ImageUploaded(image_id="abc", content_type="image/jpeg", size=10)
    assert json.loads(raw)["payload"] == {
        "image_id": "abc",
        "content_type": "image/jpeg",
        "size": 10,
    }


def test_topics_are_declared_once() -> None:
    assert len(set(TOPICS)) == len(TOPICS)
    assert IMAGE_UPLOADED.topic in TOPICS and IMAGE_SCANNED.topic in TOPICS


def mutate(**changes: object) -> bytes:
    body = json.loads(uploaded())
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty_record"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (mutate(trace_id=None), "missing_fields"),
        (mutate(type="image.scanned"), "unexpected_type"),
        (mutate(version=2), "unsupported_version"),
        (mutate(key=5), "invalid_field"),
        (mutate(payload={"image_id": "a"}), "invalid_payload"),
        (
            mutate(payload={"image_id": "a", "content_type": "x", "size": 1, "extra": 1}),
            "invalid_payload",
        ),
        (mutate(payload={"image_id": "a", "content_type": "x", "size": "big"}), "invalid_payload"),
    ],
)
def test_defects_raise_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode(raw, IMAGE_UPLOADED)
    assert info.value.reason == reason
