"""PositionGuard: a consumer left past its partition's end (the broker lost the log) starts
that partition again; a healthy position is never touched."""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import IllegalStateError, KafkaTimeoutError

from services.shared.kafka import PositionGuard

A = TopicPartition("chatpic.image.uploaded", 0)
B = TopicPartition("chatpic.image.uploaded", 1)
C = TopicPartition("chatpic.image.uploaded", 2)


@dataclass
class FakeConsumer:
    positions: dict[TopicPartition, int]
    highs: dict[TopicPartition, int | None]
    revoked: set[TopicPartition] = field(default_factory=set)
    ends: dict[TopicPartition, int] = field(default_factory=dict)  # ListOffsets answers
    asked: list[list[TopicPartition]] = field(default_factory=list)
    to_beginning: list[TopicPartition] = field(default_factory=list)
    to_end: list[TopicPartition] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def highwater(self, tp: TopicPartition) -> int | None:
        if tp in self.revoked:
            raise IllegalStateError("Partition is not assigned")
        return self.highs[tp]

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.positions[tp]

    def end_offsets(
        self, partitions: list[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        self.asked.append(sorted(partitions))
        return {tp: self.ends[tp] for tp in partitions if tp in self.ends}

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.to_beginning.extend(tps)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        self.to_end.extend(tps)


def test_a_position_past_the_end_restarts_from_the_beginning() -> None:
    consumer = FakeConsumer(positions={A: 40, B: 3, C: 7}, highs={A: 1, B: 3, C: None}, ends={C: 7})
    guard = PositionGuard(consumer, every_s=0)  # type: ignore[arg-type]
    assert guard.check() == [A]
    assert consumer.to_beginning == [A]  # B is caught up; C, never fetched, is at its end
    assert consumer.asked == [[C]]  # measured with ListOffsets, having no watermark
    assert consumer.to_end == []


def test_a_partition_never_fetched_is_measured_with_list_offsets_once() -> None:
    # After the broker came back empty, a reassigned partition may get no fetch answer at all
    # while its old position is past the new end: its watermark stays unknown.
    consumer = FakeConsumer(positions={A: 12, B: 0}, highs={A: None, B: None}, ends={A: 3, B: 0})
    guard = PositionGuard(consumer, every_s=0)  # type: ignore[arg-type]
    assert guard.check() == [A]
    assert consumer.to_beginning == [A]
    # Not asked again while it still has no watermark (a quirky end cannot rewind it twice) ...
    assert guard.check() == [] and consumer.asked == [[A, B]]
    # ... until a fetch gave it one; without one again, it is measured afresh.
    consumer.highs[A] = 3
    consumer.positions[A] = 3
    assert guard.check() == []
    consumer.highs[A] = None
    consumer.positions[A] = 9
    assert guard.check() == [A] and consumer.asked == [[A, B], [A]]


def test_a_broker_that_cannot_answer_list_offsets_changes_nothing() -> None:
    class Away(FakeConsumer):
        def end_offsets(
            self, partitions: list[TopicPartition], timeout_ms: int | None = None
        ) -> dict[TopicPartition, int]:
            raise KafkaTimeoutError("no broker")

    consumer = Away(positions={A: 12}, highs={A: None})
    guard = PositionGuard(consumer, every_s=0)  # type: ignore[arg-type]
    assert guard.check() == [] and consumer.to_beginning == []


def test_news_only_listeners_jump_to_the_end() -> None:
    consumer = FakeConsumer(positions={A: 9}, highs={A: 2})
    guard = PositionGuard(consumer, to_end=True, every_s=0)  # type: ignore[arg-type]
    assert guard.check() == [A]
    assert consumer.to_end == [A] and consumer.to_beginning == []


def test_it_looks_only_every_so_often_and_skips_revoked_partitions() -> None:
    consumer = FakeConsumer(positions={A: 40, B: 50}, highs={A: 1, B: 1}, revoked={B})
    guard = PositionGuard(consumer, every_s=3600)  # type: ignore[arg-type]
    assert guard.check() == [A]
    consumer.positions[A] = 80
    assert guard.check() == []  # not due yet
    assert consumer.to_beginning == [A]
