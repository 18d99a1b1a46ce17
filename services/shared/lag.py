"""Consumer lag of this service's Kafka groups: ``chatpic_kafka_consumer_lag{group,topic,
partition}``, measured from outside the consumers by a daemon thread every few seconds
(``CHATPIC_KAFKA_LAG_INTERVAL_S``), with standard admin requests only: Metadata (which
partitions exist, never creating a topic), OffsetFetch (the group's committed offsets) and
ListOffsets (each partition's start and end).

Per partition (see ``partition_lag``):
- committed offset present: end - committed;
- nothing committed (a new group, or a broker that forgot its groups: the local broker keeps
  everything in memory), or committed before the partition's start (retention deleted what
  the group never read): end - start, what the group will read from ``earliest``;
- committed beyond the end: 0. Real Kafka gets there only when a log was truncated (the
  consumer then starts the partition again and its next commit shows the true lag); the
  local broker also reports an end one past the *first* record of its last batch when that
  batch holds several records (measured with Tansu), so a healthy group can sit a few
  records "beyond" the end. Reporting the whole partition there would page for nothing.

A failed measurement (broker down, group unreadable) counts in
``chatpic_kafka_lag_check_failures_total{group}``, is logged once per streak, and removes the
group's series (the lag is unknown; ``chatpic_dependency_up{dependency="broker"}`` says why);
the next pass builds fresh clients, so a restarted broker is measured again within an
interval. Series of partitions that disappeared are removed too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec

from services.shared.events import topic_name
from services.shared.kafka import RECONNECT_BACKOFF_MAX_MS
from services.shared.opsmetrics import KAFKA_CONSUMER_LAG, KAFKA_LAG_FAILURES
from services.shared.settings import CommonSettings

log = logging.getLogger(__name__)


class OffsetReader(Protocol):
    """What the monitor asks the cluster (an in-memory twin in the unit tests)."""

    def partitions(self, topics: Sequence[str]) -> dict[str, list[int]]:
        """Partition ids of the topics that exist (missing topics are left out)."""
        ...

    def committed(self, group: str) -> dict[TopicPartition, int]: ...

    def bounds(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(start offsets, end offsets)."""
        ...

    def close(self) -> None: ...


def partition_lag(committed: int | None, start: int, end: int) -> int:
    if committed is None or committed < start:
        return max(0, end - start)
    return max(0, end - committed)


class KafkaOffsets:
    """The OffsetReader over one KafkaAdminClient (requests bounded by ``timeout_ms``)."""

    def __init__(self, bootstrap: str, timeout_ms: int = 3000) -> None:
        self.timeout_ms = timeout_ms
        self.admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="chatpic-lag",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,  # the default waits 30 s for a broker that is down
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )

    def partitions(self, topics: Sequence[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for topic in self.admin.describe_topics(list(topics)):
            if topic.get("error_code", 0) == 0 and topic.get("partitions"):
                out[str(topic["name"])] = sorted(
                    int(p["partition_index"]) for p in topic["partitions"]
                )
        return out

    def committed(self, group: str) -> dict[TopicPartition, int]:
        found = self.admin.list_group_offsets(group).get(group, {})
        return {tp: int(meta.offset) for tp, meta in found.items() if meta.offset >= 0}

    def bounds(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        if not partitions:
            return {}, {}

        def ask(spec: OffsetSpec) -> dict[TopicPartition, int]:
            answer = self.admin.list_partition_offsets(
                {tp: spec for tp in partitions}, timeout_ms=self.timeout_ms
            )
            return {tp: int(found.offset) for tp, found in answer.items()}

        return ask(OffsetSpec.EARLIEST), ask(OffsetSpec.LATEST)

    def close(self) -> None:
        self.admin.close()


class LagMonitor:
    """Measures ``groups`` (group id → full topic names) every ``interval_s`` in a daemon
    thread; ``sample`` is one pass, for tests."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[str]],
        interval_s: float,
        reader: Callable[[], OffsetReader],
    ) -> None:
        self.groups = {group: list(topics) for group, topics in groups.items()}
        self.interval_s = interval_s
        self._make_reader = reader
        self._reader: OffsetReader | None = None
        self._series: dict[str, set[tuple[str, str]]] = {group: set() for group in self.groups}
        self._failing: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict[str, bool]:
        """Measure every group once; True for each group measured."""
        done: dict[str, bool] = {}
        unreachable: Exception | None = None  # no reader could be made in this pass
        for group, topics in self.groups.items():
            try:
                if unreachable is not None:
                    raise unreachable
                if self._reader is None:
                    try:
                        self._reader = self._make_reader()
                    except Exception as exc:
                        unreachable = exc
                        raise
                lags = self._measure(self._reader, group, topics)
            except Exception as exc:
                self._failed(group, exc)
                self._discard_reader()
                done[group] = False
                continue
            self._publish(group, lags)
            if group in self._failing:
                self._failing.discard(group)
                log.info("consumer lag measured again", extra={"group": group})
            done[group] = True
        return done

    @staticmethod
    def _measure(
        reader: OffsetReader, group: str, topics: Sequence[str]
    ) -> dict[tuple[str, str], int]:
        existing = reader.partitions(topics)
        partitions = [TopicPartition(t, p) for t in topics for p in existing.get(t, [])]
        committed = reader.committed(group)
        starts, ends = reader.bounds(partitions)
        return {
            (tp.topic, str(tp.partition)): partition_lag(
                committed.get(tp), starts.get(tp, 0), ends[tp]
            )
            for tp in partitions
            if tp in ends
        }

    def _publish(self, group: str, lags: dict[tuple[str, str], int]) -> None:
        for (topic, partition), lag in lags.items():
            KAFKA_CONSUMER_LAG.labels(group, topic, partition).set(lag)
        self._forget(group, self._series[group] - set(lags))
        self._series[group] = set(lags)

    def _forget(self, group: str, series: set[tuple[str, str]]) -> None:
        for topic, partition in series:
            with contextlib.suppress(KeyError):
                KAFKA_CONSUMER_LAG.remove(group, topic, partition)

    def _failed(self, group: str, exc: Exception) -> None:
        KAFKA_LAG_FAILURES.labels(group).inc()
        self._forget(group, self._series[group])
        self._series[group] = set()
        if group not in self._failing:
            self._failing.add(group)
            log.warning(
                "consumer lag not measured; retrying every interval",
                extra={"group": group, "err": repr(exc)[:300]},
            )

    def _discard_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:
                log.debug("closing the lag reader raised", exc_info=True)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kafka-lag", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval_s)
        finally:
            self._discard_reader()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def lag_monitor(settings: CommonSettings, groups: Mapping[str, Sequence[str]]) -> LagMonitor:
    """A monitor for ``groups`` (group id → topic suffixes of the registry), at the settings'
    interval. Not started."""
    named = {
        group: [topic_name(settings.topic_prefix, topic) for topic in topics]
        for group, topics in groups.items()
    }
    bootstrap = settings.kafka_bootstrap
    return LagMonitor(named, settings.lag_interval_s(), lambda: KafkaOffsets(bootstrap))
