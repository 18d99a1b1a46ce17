"""Versioned event envelopes and the topic registry: topics are declared here, once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from services.shared import tracing

ENVELOPE_VERSION = 1


class EnvelopeError(ValueError):
    """A record we cannot understand: it goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageUploaded(Payload):
    image_id: str
    content_type: str
    size: int


class ImageScanned(Payload):
    image_id: str
    verdict: str
    reasons: list[str]


class BankChanged(Payload):
    bank: str
    action: str  # added | removed | settings | imported
    entries: int  # how many entries the change touched


class ImageTakenDown(Payload):
    image_id: str
    reason: str


class RoomModerated(Payload):
    """A moderator acted on a room; the change is already in MongoDB (the truth), this tells
    every rooms process to apply it to its live connections at once."""

    room_id: str
    action: str  # remove_message | mute | close
    message_id: str = ""
    nickname: str = ""
    reason: str = ""


class RoomRelay(Payload):
    """One frame for a room's live connections, relayed between rooms processes (every
    process reads every partition; the origin skips its own frames)."""

    room_id: str
    origin: str  # the publishing process's instance id
    frame: dict[str, Any]


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class EventType(Generic[P]):
    name: str
    topic: str  # suffix; the settings' topic_prefix is put in front
    payload: type[P]
    version: int = 1


IMAGE_UPLOADED = EventType("image.uploaded", "image.uploaded", ImageUploaded)
IMAGE_SCANNED = EventType("image.scanned", "image.scanned", ImageScanned)
# A push to every scanner that the banks moved; the change itself is read from MongoDB's bank
# change feed (the source of truth, which survives a broker that forgets everything).
BANK_CHANGED = EventType("bank.changed", "bank.changed", BankChanged)
IMAGE_TAKEN_DOWN = EventType("image.takedown", "image.takedown", ImageTakenDown)
ROOM_MODERATED = EventType("room.moderated", "room.moderated", RoomModerated)
ROOM_RELAY = EventType("room.relay", "room.relay", RoomRelay)
DEAD_LETTER_TOPIC = "deadletter"

EVENT_TYPES: dict[str, EventType[Any]] = {
    e.name: e
    for e in (
        IMAGE_UPLOADED,
        IMAGE_SCANNED,
        BANK_CHANGED,
        IMAGE_TAKEN_DOWN,
        ROOM_MODERATED,
        ROOM_RELAY,
    )
}
TOPICS: tuple[str, ...] = (*(e.topic for e in EVENT_TYPES.values()), DEAD_LETTER_TOPIC)


def topic_name(prefix: str, topic: str) -> str:
    return f"{prefix}{topic}"


@dataclass(frozen=True)
class Envelope(Generic[P]):
    type: str
    version: int
    id: str
    key: str
    occurred_at: str
    trace_id: str
    payload: P


def make_envelope(event: EventType[P], key: str, payload: P, trace_id: str = "") -> Envelope[P]:
    """``trace_id`` defaults to the work in hand: the Kafka record being handled, else the
    HTTP request being served (a reviewer's decision → its image.takedown), else a new id."""
    return Envelope(
        type=event.name,
        version=event.version,
        id=uuid.uuid4().hex,
        key=key,
        occurred_at=datetime.now(UTC).isoformat(),
        trace_id=trace_id or tracing.current_trace() or uuid.uuid4().hex,
        payload=payload,
    )


def encode(env: Envelope[Any]) -> bytes:
    body = {
        "type": env.type,
        "version": env.version,
        "id": env.id,
        "key": env.key,
        "occurred_at": env.occurred_at,
        "trace_id": env.trace_id,
        "payload": env.payload.model_dump(mode="json"),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


_HEADER_FIELDS = ("type", "version", "id", "key", "occurred_at", "trace_id", "payload")


def decode(raw: bytes | None, expected: EventType[P]) -> Envelope[P]:
    """Parse and validate a record value; any defect raises EnvelopeError with a reason."""
    if raw is None:
        raise EnvelopeError("empty_record")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError("invalid_json", str(exc)[:200]) from exc
    if not isinstance(body, dict):
        raise EnvelopeError("not_an_object")
    missing = [f for f in _HEADER_FIELDS if f not in body]
    if missing:
        raise EnvelopeError("missing_fields", ",".join(missing))
    if body["type"] != expected.name:
        raise EnvelopeError("unexpected_type", str(body["type"])[:100])
    if body["version"] != expected.version:
        raise EnvelopeError("unsupported_version", str(body["version"])[:20])
    for field in ("id", "key", "occurred_at", "trace_id"):
        if not isinstance(body[field], str):
            raise EnvelopeError("invalid_field", field)
    try:
        payload = expected.payload.model_validate(body["payload"])
    except ValidationError as exc:
        raise EnvelopeError("invalid_payload", str(exc.errors()[:3])[:300]) from exc
    return Envelope(
        type=body["type"],
        version=body["version"],
        id=body["id"],
        key=body["key"],
        occurred_at=body["occurred_at"],
        trace_id=body["trace_id"],
        payload=payload,
    )
