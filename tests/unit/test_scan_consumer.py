"""The scanner's Kafka loop with in-memory twins: commit only after the work, dead-letter
poison at once, bounded retries, and nothing committed when stopped mid-retry."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError

from services.scanner import metrics
from services.scanner.consumer import ScanConsumer, consume_until_stopped
from services.scanner.settings import ScannerSettings
from services.shared.events import IMAGE_UPLOADED, ImageUploaded, encode, make_envelope
from services.shared.kafka import MemoryPublisher

TP = TopicPartition("chatpic.image.uploaded", 0)


@dataclass
class Record:
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = TP.topic
    partition: int = 0


@dataclass
class FakeConsumer:
    batches: list[list[Record]]
    stop: threading.Event
    commits: list[int] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set()  # nothing for the position guard to look at

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if not self.batches:
            self.stop.set()
            return {}
        return {TP: self.batches.pop(0)}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets[TP].offset)


@dataclass
class FakeIndex:
    refreshes: int = 0

    def refresh(self) -> None:
        self.refreshes += 1


@dataclass
class FakeWorker:
    fail_times: int = 0
    handled: list[str] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    index: FakeIndex = field(default_factory=FakeIndex)

    def handle(self, env: Any) -> None:
        self.entered.set()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("database unreachable")
        self.handled.append(env.payload.image_id)


def good(image_id: str) -> bytes:
    payload = ImageUploaded(image_id=image_id, content_type="image/jpeg", size=1)
    return encode(make_envelope(IMAGE_UPLOADED, image_id, payload))


def run(
    batches: list[list[Record]], worker: FakeWorker, **settings: Any
) -> tuple[FakeConsumer, MemoryPublisher]:
    stop = threading.Event()
    consumer = FakeConsumer(batches, stop)
    dlq = MemoryPublisher()
    cfg = ScannerSettings(retry_backoff_s=0.0, **settings)
    ScanConsumer(consumer, worker, dlq, cfg, stop).run()  # type: ignore[arg-type]
    return consumer, dlq


def test_banks_are_refreshed_on_every_poll_even_when_idle() -> None:
    worker = FakeWorker()
    run([[], [], []], worker)
    assert worker.index.refreshes >= 3 and worker.handled == []


def test_commits_each_record_after_its_work() -> None:
    worker = FakeWorker()
    consumer, dlq = run([[Record(0, good("a")), Record(1, good("b"))]], worker)
    assert worker.handled == ["a", "b"]
    assert consumer.commits == [1, 2]
    assert dlq.records == []


def test_poison_goes_to_dead_letter_and_consumption_moves_on() -> None:
    worker = FakeWorker()
    consumer, dlq = run([[Record(0, b"{nope"), Record(1, None), Record(2, good("c"))]], worker)
    assert [r[0] for r in dlq.records] == ["deadletter", "deadletter"]
    assert dlq.records[0][2] == b"{nope"
    assert worker.handled == ["c"] and consumer.commits == [1, 2, 3]


def test_transient_failure_is_retried_then_succeeds() -> None:
    worker = FakeWorker(fail_times=2)
    consumer, dlq = run([[Record(0, good("a"))]], worker, max_attempts=5)
    assert worker.handled == ["a"] and consumer.commits == [1] and dlq.records == []


def test_persistent_failure_is_dead_lettered_not_retried_forever() -> None:
    worker = FakeWorker(fail_times=100)
    consumer, dlq = run([[Record(0, good("a")), Record(1, good("b"))]], worker, max_attempts=3)
    assert len(dlq.records) == 2 and consumer.commits == [1, 2]
    assert worker.fail_times == 100 - 6


def test_stop_during_retry_leaves_the_offset_uncommitted() -> None:
    stop = threading.Event()
    worker = FakeWorker(fail_times=100)
    consumer = FakeConsumer([[Record(0, good("a"))]], stop)
    cfg = ScannerSettings(retry_backoff_s=0.05, max_attempts=50)
    loop = ScanConsumer(consumer, worker, MemoryPublisher(), cfg, stop)  # type: ignore[arg-type]
    thread = threading.Thread(target=loop.run)
    thread.start()
    assert worker.entered.wait(5)  # the record is being worked on (and failing)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert worker.handled == [] and worker.fail_times < 100
    assert consumer.commits == []  # redelivered to whoever owns the partition next


@dataclass
class BrokerLostConsumer(FakeConsumer):
    """A consumer whose first poll raises, as kafka-python does when the broker goes away while
    the group is being joined; it records whether it was closed without a commit."""

    closed: list[bool] = field(default_factory=list)

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        raise KafkaConnectionError("111 ECONNREFUSED")

    def close(self, autocommit: bool = True) -> None:
        self.closed.append(autocommit)


def test_a_consumer_that_fails_is_replaced_and_the_process_keeps_scanning() -> None:
    stop = threading.Event()
    worker = FakeWorker()
    lost = BrokerLostConsumer([], stop)
    healthy = FakeConsumer([[Record(0, good("img-after-restart"))]], stop)
    made = [lost, healthy]
    states: list[bool] = []
    before = metrics.CONSUMER_RESTARTS._value.get()
    consume_until_stopped(
        ScannerSettings(),
        worker,  # type: ignore[arg-type]
        MemoryPublisher(),
        stop,
        states.append,
        new_consumer=lambda: made.pop(0),  # type: ignore[arg-type,return-value]
        pause_s=0.01,
    )
    assert worker.handled == ["img-after-restart"]  # the second consumer did the work
    assert healthy.commits == [1]
    assert lost.closed == [False]  # closed, nothing committed for it
    assert metrics.CONSUMER_RESTARTS._value.get() == before + 1
    assert states == [True, False, True, False]  # not consuming while replaced
