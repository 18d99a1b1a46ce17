"""The links takedown consumer with in-memory twins: the writes it asks for, commit only after
them, poison dead-lettered at once, bounded retries, idempotent redelivery, clean stop.
(The writes' effect on a real database is tested in tests/integration.)"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from services.links import takedowns
from services.links.takedowns import TakedownConsumer, drop_tickets, kill_links, not_cleared
from services.shared.events import (
    IMAGE_TAKEN_DOWN,
    IMAGE_UPLOADED,
    ImageTakenDown,
    ImageUploaded,
    encode,
    make_envelope,
)
from services.shared.kafka import MemoryPublisher
from services.shared.settings import CommonSettings

TP = TopicPartition("chatpic.image.takedown", 0)
TP2 = TopicPartition("chatpic.image.takedown", 1)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Record:
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = TP.topic
    partition: int = 0


@dataclass
class FakeConsumer:
    batches: list[dict[TopicPartition, list[Record]]]
    stop: threading.Event
    commits: list[dict[int, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set()  # nothing for the position guard to look at

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if not self.batches:
            self.stop.set()
            return {}
        return self.batches.pop(0)

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append({tp.partition: om.offset for tp, om in offsets.items()})


@dataclass
class FakeLinks:
    """Records the update it is asked for; ``alive`` is how many links the update would end
    (emptied by the first update: the filter skips links already ended)."""

    alive: dict[str, int] = field(default_factory=dict)
    fail_times: int = 0
    calls: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)

    def update_many(self, query: dict[str, Any], update: dict[str, Any]) -> Any:
        self.entered.set()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("database unreachable")
        self.calls.append((query, update))
        return SimpleNamespace(modified_count=self.alive.pop(query["image_id"], 0))


@dataclass
class FakeTickets:
    calls: list[dict[str, Any]] = field(default_factory=list)

    def delete_many(self, query: dict[str, Any]) -> Any:
        self.calls.append(query)
        return SimpleNamespace(deleted_count=1)


def takedown(image_id: str) -> bytes:
    payload = ImageTakenDown(image_id=image_id, reason="hash_match:test")
    return encode(make_envelope(IMAGE_TAKEN_DOWN, image_id, payload))


@dataclass
class Run:
    consumer: FakeConsumer
    dlq: MemoryPublisher
    killed: list[int]
    dead: list[str]


def run(
    batches: list[dict[TopicPartition, list[Record]]],
    links: FakeLinks,
    tickets: FakeTickets | None = None,
    max_attempts: int = 3,
    in_force: Callable[[str], bool] = lambda _: True,
) -> Run:
    stop = threading.Event()
    consumer = FakeConsumer(batches, stop)
    dlq = MemoryPublisher()
    killed: list[int] = []
    dead: list[str] = []
    TakedownConsumer(
        consumer,
        links,  # type: ignore[arg-type]
        tickets or FakeTickets(),  # type: ignore[arg-type]
        dlq,
        stop,
        on_killed=killed.append,
        on_dead_letter=dead.append,
        max_attempts=max_attempts,
        retry_backoff_s=0.0,
        clock=lambda: NOW,
        in_force=in_force,
    ).run()
    return Run(consumer, dlq, killed, dead)


def test_kill_links_ends_only_links_not_yet_ended_with_one_update() -> None:
    links = FakeLinks(alive={"img1": 2})
    assert kill_links(links, "img1", "hash_match:x", NOW) == 2  # type: ignore[arg-type]
    assert links.calls == [
        (
            {"image_id": "img1", "revoked": {"$ne": True}},
            {"$set": {"revoked": True, "ended_reason": "removed", "ended_at": NOW}},
        )
    ]
    assert kill_links(links, "img1", "hash_match:x", NOW) == 0  # type: ignore[arg-type]


def test_drop_tickets_deletes_the_images_unused_tickets() -> None:
    tickets = FakeTickets()
    assert drop_tickets(tickets, "img1") == 1  # type: ignore[arg-type]
    assert tickets.calls == [{"image_id": "img1", "used_at": None}]


def test_each_takedown_ends_links_drops_tickets_and_commits_after() -> None:
    links, tickets = FakeLinks(alive={"a": 2, "b": 1}), FakeTickets()
    r = run([{TP: [Record(0, takedown("a")), Record(1, takedown("b"))]}], links, tickets)
    assert [q["image_id"] for q, _ in links.calls] == ["a", "b"]
    assert tickets.calls == [{"image_id": "a", "used_at": None}, {"image_id": "b", "used_at": None}]
    assert r.consumer.commits == [{0: 2}]  # once per batch, after the writes
    assert r.killed == [2, 1] and r.dlq.records == [] and r.dead == []


def test_a_late_takedown_of_an_image_cleared_again_ends_nothing() -> None:
    """An overturned appeal restored the links before the old event arrived: it is skipped
    (and committed), while a takedown still in force is handled."""
    links = FakeLinks(alive={"a": 2, "b": 1})
    r = run(
        [{TP: [Record(0, takedown("a")), Record(1, takedown("b"))]}],
        links,
        in_force=lambda image_id: image_id != "a",
    )
    assert [q["image_id"] for q, _ in links.calls] == ["b"]
    assert r.killed == [1] and r.consumer.commits == [{0: 2}]


def test_not_cleared_reads_the_image_status() -> None:
    @dataclass
    class Images:
        docs: dict[str, dict[str, Any]]

        def find_one(self, query: dict[str, Any], _fields: Any = None) -> dict[str, Any] | None:
            return self.docs.get(query["_id"])

    check = not_cleared(
        Images({"c": {"status": "cleared"}, "r": {"status": "removed"}})  # type: ignore[arg-type]
    )
    assert check("r") and check("gone") and not check("c")


def test_a_redelivered_takedown_changes_nothing_and_counts_nothing() -> None:
    links = FakeLinks(alive={"a": 3})
    r = run([{TP: [Record(0, takedown("a"))]}, {TP: [Record(0, takedown("a"))]}], links)
    assert len(links.calls) == 2  # asked twice; the filter skips links already ended
    assert r.killed == [3]
    assert r.consumer.commits == [{0: 1}, {0: 1}]


def test_poison_goes_to_the_dead_letter_topic_and_consumption_moves_on() -> None:
    wrong_type = encode(
        make_envelope(
            IMAGE_UPLOADED, "x", ImageUploaded(image_id="x", content_type="image/png", size=1)
        )
    )
    links = FakeLinks(alive={"c": 1})
    batch = [Record(0, b"{nope"), Record(1, None), Record(2, wrong_type), Record(3, takedown("c"))]
    r = run([{TP: batch}], links)
    assert [rec[0] for rec in r.dlq.records] == ["deadletter"] * 3
    assert r.dlq.records[0][2] == b"{nope" and r.dlq.records[1][2] == b""
    assert r.dead == ["invalid_json", "empty_record", "unexpected_type"]
    assert [q["image_id"] for q, _ in links.calls] == ["c"]
    assert r.consumer.commits == [{0: 4}]


def test_dead_letters_carry_the_reason_and_origin_in_headers() -> None:
    seen: list[list[tuple[str, bytes]]] = []

    class HeaderPublisher(MemoryPublisher):
        def publish_raw(
            self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
        ) -> None:
            seen.append(headers)
            super().publish_raw(topic, key, value, headers)

    record = Record(7, b"[]", partition=1, topic=TP2.topic)
    assert takedowns.dead_letter(HeaderPublisher(), record, "not_an_object", "", threading.Event())
    assert dict(seen[0]) == {
        "dlq_reason": b"not_an_object",
        "dlq_detail": b"",
        "source_topic": TP2.topic.encode(),
        "source_partition": b"1",
        "source_offset": b"7",
    }


def test_transient_database_failure_is_retried_then_succeeds() -> None:
    links = FakeLinks(alive={"a": 1}, fail_times=2)
    r = run([{TP: [Record(0, takedown("a"))]}], links, max_attempts=5)
    assert r.killed == [1] and r.dlq.records == [] and r.consumer.commits == [{0: 1}]


def test_persistent_failure_is_dead_lettered_after_bounded_attempts() -> None:
    links = FakeLinks(fail_times=100)
    r = run([{TP: [Record(0, takedown("a")), Record(1, takedown("b"))]}], links, max_attempts=3)
    assert links.fail_times == 100 - 6  # three attempts each, never endless
    assert r.dead == ["handler_failed", "handler_failed"]
    assert r.consumer.commits == [{0: 2}]


def test_offsets_are_committed_per_partition() -> None:
    links = FakeLinks(alive={"a": 1, "b": 1})
    r = run([{TP: [Record(4, takedown("a"))], TP2: [Record(9, takedown("b"), partition=1)]}], links)
    assert r.consumer.commits == [{0: 5, 1: 10}]


def test_a_dead_letter_waits_out_a_broker_outage() -> None:
    stop = threading.Event()
    dlq = MemoryPublisher(fail=True)
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(
            takedowns.dead_letter(dlq, Record(0, b"x"), "invalid_json", "", stop, retry_s=0.01)
        )
    )
    thread.start()
    thread.join(0.2)
    assert thread.is_alive() and dlq.records == []  # still trying: the record is not dropped
    dlq.fail = False
    thread.join(5)
    assert result == [True] and len(dlq.records) == 1


def test_stop_during_retries_leaves_the_offset_uncommitted() -> None:
    stop = threading.Event()
    links = FakeLinks(fail_times=100)
    consumer = FakeConsumer([{TP: [Record(0, takedown("a"))]}], stop)
    loop = TakedownConsumer(
        consumer,
        links,  # type: ignore[arg-type]
        FakeTickets(),  # type: ignore[arg-type]
        MemoryPublisher(),
        stop,
        max_attempts=50,
        retry_backoff_s=0.05,
    )
    thread = threading.Thread(target=loop.run)
    thread.start()
    assert links.entered.wait(5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert consumer.commits == []  # redelivered to whoever owns the partition next


def test_stop_mid_batch_commits_only_what_was_done() -> None:
    stop = threading.Event()

    class StoppingLinks(FakeLinks):
        def update_many(self, query: dict[str, Any], update: dict[str, Any]) -> Any:
            res = super().update_many(query, update)
            stop.set()  # SIGTERM arrives while the first record is handled
            return res

    links = StoppingLinks(alive={"a": 1, "b": 1})
    consumer = FakeConsumer([{TP: [Record(0, takedown("a")), Record(1, takedown("b"))]}], stop)
    TakedownConsumer(
        consumer,
        links,  # type: ignore[arg-type]
        FakeTickets(),  # type: ignore[arg-type]
        MemoryPublisher(),
        stop,
    ).run()
    assert [q["image_id"] for q, _ in links.calls] == ["a"]
    assert consumer.commits == [{0: 1}]


def test_start_rebuilds_a_consumer_that_cannot_be_made_and_stops_cleanly(
    monkeypatch: Any,
) -> None:
    made: list[int] = []
    stop = threading.Event()

    def failing_make_consumer(*_: Any) -> Any:
        made.append(1)
        if len(made) >= 2:
            stop.set()
        raise OSError("no broker")

    monkeypatch.setattr(takedowns, "make_consumer", failing_make_consumer)
    monkeypatch.setattr(stop, "wait", lambda timeout=None: stop.is_set())
    thread = takedowns.start(
        CommonSettings(),
        FakeLinks(),  # type: ignore[arg-type]
        FakeTickets(),  # type: ignore[arg-type]
        stop,
        publisher=MemoryPublisher(),
    )
    thread.join(5)
    assert not thread.is_alive() and len(made) == 2
