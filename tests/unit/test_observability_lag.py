"""The consumer-lag monitor against an in-memory twin of the admin requests it makes:
the lag rules, series of vanished partitions removed, failures counted and logged once per
streak, a fresh reader after a failure, and a thread that stops."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from kafka import TopicPartition
from prometheus_client import REGISTRY

from services.shared.lag import LagMonitor, OffsetReader, partition_lag


@dataclass
class Cluster:
    """What the broker knows: topics → partitions → (start, end); groups' commits."""

    logs: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)
    commits: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    down: bool = False
    readers: int = 0
    closed: int = 0


@dataclass
class TwinReader:
    cluster: Cluster

    def _up(self) -> None:
        if self.cluster.down:
            raise ConnectionError("broker unreachable (twin)")

    def partitions(self, topics: Sequence[str]) -> dict[str, list[int]]:
        self._up()
        return {t: sorted(self.cluster.logs[t]) for t in topics if t in self.cluster.logs}

    def committed(self, group: str) -> dict[TopicPartition, int]:
        self._up()
        return dict(self.cluster.commits.get(group, {}))

    def bounds(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        self._up()
        starts = {tp: self.cluster.logs[tp.topic][tp.partition][0] for tp in partitions}
        ends = {tp: self.cluster.logs[tp.topic][tp.partition][1] for tp in partitions}
        return starts, ends

    def close(self) -> None:
        self.cluster.closed += 1


def monitor(cluster: Cluster, groups: dict[str, list[str]], interval_s: float = 60) -> LagMonitor:
    def make() -> OffsetReader:
        cluster.readers += 1
        return TwinReader(cluster)

    return LagMonitor(groups, interval_s, make)


def lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "chatpic_kafka_consumer_lag",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


def failures(group: str) -> float:
    return (
        REGISTRY.get_sample_value("chatpic_kafka_lag_check_failures_total", {"group": group}) or 0.0
    )


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"group-{tag}", f"topic-{tag}"


@pytest.mark.parametrize(
    ("committed", "start", "end", "expected"),
    [
        (5, 0, 12, 7),  # the usual case
        (12, 0, 12, 0),  # caught up
        (None, 0, 12, 12),  # nothing committed: the group reads from the start
        (None, 4, 12, 8),  # ...which retention may have moved
        (2, 4, 12, 8),  # committed before the start: what is left is all it can read
        (15, 0, 12, 0),  # beyond the end: truncated log, or the local broker's batch end
        (None, 0, 0, 0),
    ],
)
def test_partition_lag_rules(committed: int | None, start: int, end: int, expected: int) -> None:
    assert partition_lag(committed, start, end) == expected


def test_lag_per_partition_and_vanished_partitions_are_removed() -> None:
    group, topic = names()
    cluster = Cluster(
        logs={topic: {0: (0, 10), 1: (0, 4), 2: (3, 9)}},
        commits={group: {TopicPartition(topic, 0): 7, TopicPartition(topic, 1): 4}},
    )
    lags = monitor(cluster, {group: [topic]})
    assert lags.sample() == {group: True}
    assert [lag(group, topic, p) for p in (0, 1, 2)] == [3, 0, 6]

    # The topic comes back with one partition (a broker that lost everything, recreated).
    cluster.logs[topic] = {0: (0, 2)}
    cluster.commits[group] = {}
    assert lags.sample() == {group: True}
    assert lag(group, topic, 0) == 2
    assert lag(group, topic, 1) is None and lag(group, topic, 2) is None

    del cluster.logs[topic]  # not there at all (yet): no series, and not an error
    assert lags.sample() == {group: True}
    assert lag(group, topic, 0) is None
    assert failures(group) == 0


def test_one_process_measures_several_groups_independently() -> None:
    scans, scanned = names()
    takedowns, taken = names()
    cluster = Cluster(
        logs={scanned: {0: (0, 5)}, taken: {0: (0, 3)}},
        commits={scans: {TopicPartition(scanned, 0): 5}},
    )
    lags = monitor(cluster, {scans: [scanned], takedowns: [taken]})
    lags.sample()
    assert lag(scans, scanned, 0) == 0
    assert lag(takedowns, taken, 0) == 3
    assert lag(scans, taken, 0) is None  # each group only over its own topics


def test_failures_are_counted_logged_once_per_streak_and_recovered_from(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group, topic = names()
    cluster = Cluster(logs={topic: {0: (0, 10)}}, commits={group: {TopicPartition(topic, 0): 4}})
    lags = monitor(cluster, {group: [topic]})
    caplog.set_level(logging.INFO, logger="services.shared.lag")
    lags.sample()
    assert lag(group, topic, 0) == 6 and cluster.readers == 1

    cluster.down = True
    assert lags.sample() == {group: False}
    assert lags.sample() == {group: False}
    assert lags.sample() == {group: False}
    assert failures(group) == 3
    assert lag(group, topic, 0) is None  # unknown while it cannot be measured
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and getattr(warnings[0], "group", None) == group
    assert cluster.closed >= 1  # the failed reader was closed; each pass tries a new one

    # The broker comes back empty: nothing committed, the group will read from the start.
    cluster.down = False
    cluster.logs[topic] = {0: (0, 3)}
    cluster.commits = {}
    assert lags.sample() == {group: True}
    assert lag(group, topic, 0) == 3
    assert any(r.getMessage() == "consumer lag measured again" for r in caplog.records)
    assert cluster.readers >= 2

    cluster.down = True  # a new streak logs again
    lags.sample()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_a_reader_that_cannot_be_made_is_a_failure_not_a_crash() -> None:
    group, topic = names()
    other, _ = names()
    attempts: list[int] = []

    def broken() -> OffsetReader:
        attempts.append(1)
        raise OSError("no brokers available")

    lags = LagMonitor({group: [topic], other: [topic]}, 60, broken)
    assert lags.sample() == {group: False, other: False}
    assert failures(group) == 1 and failures(other) == 1
    assert len(attempts) == 1  # one try per pass: bootstrapping a dead broker takes seconds
    lags.sample()
    assert len(attempts) == 2


def test_the_thread_samples_every_interval_and_stops_cleanly() -> None:
    group, topic = names()
    cluster = Cluster(logs={topic: {0: (0, 1)}})
    lags = monitor(cluster, {group: [topic]}, interval_s=0.05)
    lags.start()
    try:
        deadline = time.monotonic() + 5
        while lag(group, topic, 0) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lag(group, topic, 0) == 1
        cluster.logs[topic] = {0: (0, 4)}
        while lag(group, topic, 0) != 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lag(group, topic, 0) == 4
    finally:
        started = time.monotonic()
        lags.stop()
        assert time.monotonic() - started < 1
    assert not any(t.name == "kafka-lag" and t.is_alive() for t in threading.enumerate())
    assert cluster.closed == 1  # the thread closes its reader on the way out
