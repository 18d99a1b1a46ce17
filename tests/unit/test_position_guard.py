"""PositionGuard: a consumer left past its partition's end (the broker lost the log) starts
that partition again; a healthy position is never touched."""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import IllegalStateError

from services.shared.kafka import PositionGuard

A = TopicPartition("chatpic.image.uploaded", 0)
B = TopicPartition("chatpic.image.uploaded", 1)
C = TopicPartition("chatpic.image.uploaded", 2)


@dataclass
class FakeConsumer:
    positions: dict[TopicPartition, int]
    highs: dict[TopicPartition, int | None]
    revoked: set[TopicPartition] = field(default_factory=set)
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

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.to_beginning.extend(tps)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        self.to_end.extend(tps)


def test_a_position_past_the_end_restarts_from_the_beginning() -> None:
    consumer = FakeConsumer(positions={A: 40, B: 3, C: 7}, highs={A: 1, B: 3, C: None})
    guard = PositionGuard(consumer, every_s=0)  # type: ignore[arg-type]
    assert guard.check() == [A]
    assert consumer.to_beginning == [A]  # B is caught up, C was never fetched: left alone
    assert consumer.to_end == []


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
