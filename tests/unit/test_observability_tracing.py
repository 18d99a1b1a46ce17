"""Trace ids through Kafka handling: every log line written while the scanner, links or rooms
handle a record carries the record's trace id; events published meanwhile (or while serving a
request) keep it; dead letters are counted by source topic and reason, and keep it too."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from prometheus_client import REGISTRY

from services.links.takedowns import TakedownConsumer
from services.rooms import consumers
from services.scanner.consumer import ScanConsumer
from services.scanner.settings import ScannerSettings
from services.shared import tracing
from services.shared.events import (
    IMAGE_SCANNED,
    IMAGE_TAKEN_DOWN,
    IMAGE_UPLOADED,
    Envelope,
    ImageScanned,
    ImageTakenDown,
    ImageUploaded,
    encode,
    make_envelope,
)
from services.shared.kafka import dead_letter
from services.shared.logs import ContextIds, JsonFormatter

handler_log = logging.getLogger("tests.observability.handler")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextIds())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def traces(self, message: str) -> list[str | None]:
        return [getattr(r, "trace_id", None) for r in self.records if r.getMessage() == message]


@pytest.fixture
def logs() -> Iterator[Collect]:
    handler = Collect()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@dataclass
class Record:
    topic: str
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = b"k"
    partition: int = 0


@dataclass
class Recording:
    """A publisher twin that keeps headers too."""

    sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )

    def publish(self, topic: str, env: Envelope[Any]) -> None:
        headers = [("trace_id", env.trace_id.encode()), ("type", env.type.encode())]
        self.publish_raw(topic, env.key.encode(), encode(env), headers)

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, key, value, list(headers)))

    def close(self) -> None:
        return None


@dataclass
class OneBatch:
    """A consumer twin: one batch, then it asks the loop to stop."""

    records: list[Record]
    stop: threading.Event
    commits: list[int] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set()

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if not self.records:
            self.stop.set()
            return {}
        batch, self.records = self.records, []
        return {TopicPartition(batch[0].topic, 0): batch}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits += [o.offset for o in offsets.values()]


def trace() -> str:
    return f"obs-{uuid.uuid4().hex[:12]}"


def test_json_lines_carry_the_ids_of_the_work_in_hand() -> None:
    formatter = JsonFormatter("test")
    ids = ContextIds()

    def line(**extra: Any) -> dict[str, Any]:
        record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO", **extra})
        ids.filter(record)
        return dict(json.loads(formatter.format(record)))

    assert "request_id" not in line() and "trace_id" not in line()
    token = tracing.request_id.set("req-1")
    try:
        with tracing.tracing("trace-1"):
            out = line()
            assert out["request_id"] == "req-1" and out["trace_id"] == "trace-1"
            assert line(trace_id="explicit")["trace_id"] == "explicit"  # an explicit one wins
        assert "trace_id" not in line()
    finally:
        tracing.request_id.reset(token)


def test_events_made_while_serving_or_handling_keep_the_id() -> None:
    payload = ImageTakenDown(image_id="i1", reason="r")
    fresh = make_envelope(IMAGE_TAKEN_DOWN, "i1", payload).trace_id
    assert len(fresh) == 32
    token = tracing.request_id.set("obs-review-decision")
    try:
        # A reviewer's decision: its image.takedown carries the request's id.
        assert make_envelope(IMAGE_TAKEN_DOWN, "i1", payload).trace_id == "obs-review-decision"
        with tracing.tracing("obs-upload-7"):
            assert make_envelope(IMAGE_TAKEN_DOWN, "i1", payload).trace_id == "obs-upload-7"
        assert make_envelope(IMAGE_TAKEN_DOWN, "i1", payload, "given").trace_id == "given"
    finally:
        tracing.request_id.reset(token)


def test_a_malformed_trace_id_is_not_put_in_the_logs() -> None:
    with tracing.tracing("bad id\nwith newline"):
        assert tracing.trace_id.get() == ""
    record = Record("t", 0, b"", headers=[("trace_id", b"x" * 80)])
    assert tracing.record_trace(record) == ""
    record = Record("t", 0, b"", headers=[("type", b"a"), ("trace_id", b"obs-1")])
    assert tracing.record_trace(record) == "obs-1"


@dataclass
class LoggingWorker:
    seen: list[str] = field(default_factory=list)
    index: Any = field(default_factory=lambda: SimpleNamespace(refresh=lambda: None))

    def handle(self, env: Envelope[ImageUploaded]) -> None:
        handler_log.info("scanning")
        self.seen.append(tracing.trace_id.get())


def uploaded(trace_id: str, image_id: str = "img") -> bytes:
    payload = ImageUploaded(image_id=image_id, content_type="image/jpeg", size=1)
    return encode(make_envelope(IMAGE_UPLOADED, image_id, payload, trace_id))


def dead_letters(source_topic: str, reason: str) -> float:
    labels = {"source_topic": source_topic, "reason": reason}
    return REGISTRY.get_sample_value("chatpic_kafka_dead_letters_total", labels) or 0.0


def test_scanner_lines_carry_the_records_trace_id_and_poison_keeps_its_header(
    logs: Collect,
) -> None:
    topic = f"obs-{uuid.uuid4().hex[:6]}.image.uploaded"
    first, second, poison = trace(), trace(), trace()
    stop = threading.Event()
    records = [
        Record(topic, 0, uploaded(first), [("trace_id", first.encode())]),
        Record(topic, 1, b"{not json", [("trace_id", poison.encode())]),
        Record(topic, 2, uploaded(second)),  # no header: the envelope's id is enough
    ]
    worker = LoggingWorker()
    dlq = Recording()
    consumer = OneBatch(records, stop)
    ScanConsumer(consumer, worker, dlq, ScannerSettings(), stop).run()  # type: ignore[arg-type]
    assert worker.seen == [first, second]
    assert logs.traces("scanning") == [first, second]
    assert logs.traces("record dead-lettered") == [poison]
    assert tracing.trace_id.get() == ""  # nothing left set between records
    assert consumer.commits == [1, 2, 3]
    (letter,) = dlq.sent
    headers = dict(letter[3])
    assert headers["trace_id"] == poison.encode() and headers["dlq_reason"] == b"invalid_json"
    assert dead_letters(topic, "invalid_json") == 1


def test_links_takedown_lines_carry_the_trace_id(logs: Collect) -> None:
    topic = f"obs-{uuid.uuid4().hex[:6]}.image.takedown"
    upload = trace()
    payload = ImageTakenDown(image_id="img9", reason="review:csam")
    value = encode(make_envelope(IMAGE_TAKEN_DOWN, "img9", payload, upload))
    stop = threading.Event()

    class Links:
        def update_many(self, query: Any, update: Any) -> Any:
            return SimpleNamespace(modified_count=2)

    class Tickets:
        def delete_many(self, query: Any) -> Any:
            handler_log.info("tickets dropped")
            return SimpleNamespace(deleted_count=0)

    TakedownConsumer(
        OneBatch([Record(topic, 0, value)], stop),
        Links(),  # type: ignore[arg-type]
        Tickets(),  # type: ignore[arg-type]
        Recording(),
        stop,
    ).run()
    assert logs.traces("links ended by a takedown") == [upload]
    assert logs.traces("tickets dropped") == [upload]
    assert logs.traces("image.takedown handled") == [upload]


def test_rooms_consumers_trace_and_dead_letter_what_they_cannot_read(logs: Collect) -> None:
    topic = f"obs-{uuid.uuid4().hex[:6]}.image.scanned"
    upload = trace()
    payload = ImageScanned(image_id="img3", verdict="cleared", reasons=[])
    good = Record(topic, 4, encode(make_envelope(IMAGE_SCANNED, "img3", payload, upload)))
    bad = Record(topic, 5, b'{"type": "image.scanned"}')
    handled: list[str] = []

    def handle(p: ImageScanned) -> None:
        handler_log.info("settling")
        handled.append(p.image_id)

    dlq = Recording()
    stop = threading.Event()
    assert consumers.process(good, IMAGE_SCANNED, handle, dlq, stop) is True
    assert consumers.process(bad, IMAGE_SCANNED, handle, dlq, stop) is True
    assert handled == ["img3"] and logs.traces("settling") == [upload]
    (letter,) = dlq.sent
    headers = dict(letter[3])
    assert letter[0] == "deadletter" and letter[2] == bad.value
    assert headers["dlq_reason"] == b"missing_fields" and headers["source_offset"] == b"5"
    assert dead_letters(topic, "missing_fields") == 1


def test_a_dead_letter_waiting_out_an_outage_gives_up_when_stopping() -> None:
    class Down:
        def publish_raw(self, *_: Any) -> None:
            from services.shared.kafka import PublishError

            raise PublishError("down")

    stop = threading.Event()
    stop.set()
    topic = f"obs-{uuid.uuid4().hex[:6]}"
    record = Record(topic, 0, b"x")
    assert dead_letter(Down(), record, "invalid_json", "", stop, retry_s=0) is False  # type: ignore[arg-type]
    assert dead_letters(topic, "invalid_json") == 0  # counted only once it is published
