"""Kafka clients, made one way for every service, plus the publisher port and its twin."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.shared import tracing
from services.shared.events import DEAD_LETTER_TOPIC, TOPICS, Envelope, encode, topic_name
from services.shared.opsmetrics import DEAD_LETTERS
from services.shared.settings import CommonSettings

log = logging.getLogger(__name__)

# A broker that comes back is found again within seconds (the client default backs off to 30 s).
RECONNECT_BACKOFF_MAX_MS = 2000


class PublishError(RuntimeError):
    """The broker did not acknowledge a record in time. The caller keeps the work pending."""


class Publisher(Protocol):
    def publish(self, topic: str, env: Envelope[Any]) -> None: ...

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None: ...

    def close(self) -> None: ...


class KafkaPublisher:
    """Synchronous, acknowledged publish (acks=all): returns only once the broker has the record."""

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings
        self._timeout = settings.kafka_publish_timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        # After a failure, fail fast for a while instead of making every caller wait for the
        # full timeout (uploads stay quick during a broker outage; the re-publisher retries).
        self._cooldown_s = max(1.0, self._timeout)
        self._down_until = 0.0

    def _client(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    client_id="chatpic",
                    acks="all",
                    linger_ms=2,
                    retries=3,
                    max_block_ms=int(self._timeout * 1000),
                    request_timeout_ms=int(self._timeout * 1000),
                    reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                )
            return self._producer

    def publish(self, topic: str, env: Envelope[Any]) -> None:
        headers = [("trace_id", env.trace_id.encode()), ("type", env.type.encode())]
        self.publish_raw(topic, env.key.encode(), encode(env), headers)

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        name = topic_name(self._settings.topic_prefix, topic)
        if time.monotonic() < self._down_until:
            raise PublishError(f"publish to {name} skipped: broker unreachable moments ago")
        try:
            future = self._client().send(name, key=key, value=value, headers=headers)
            future.get(timeout=self._timeout)
        except (KafkaError, OSError) as exc:
            self._down_until = time.monotonic() + self._cooldown_s
            # A producer that lost its broker can be left in a fatal state (e.g. its producer
            # id is unknown to a broker that restarted empty): start afresh next time.
            self._discard()
            raise PublishError(f"publish to {name} failed: {type(exc).__name__}") from exc

    def _discard(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:
                log.debug("closing a failed producer raised", exc_info=True)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=2)
                self._producer = None


@dataclass
class MemoryPublisher:
    """In-memory twin of the publisher port, for unit tests. ``fail`` simulates a broker outage."""

    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    fail: bool = False

    def publish(self, topic: str, env: Envelope[Any]) -> None:
        self.publish_raw(topic, env.key.encode(), encode(env), [])

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if self.fail:
            raise PublishError("broker unavailable (simulated)")
        self.records.append((topic, key, value))

    def close(self) -> None:
        return None


def dead_letter(
    publisher: Publisher,
    record: Any,
    reason: str,
    detail: str,
    stop: threading.Event,
    retry_s: float = 1.0,
) -> bool:
    """Publish a consumed ``record`` to the dead-letter topic, its reason and origin in the
    headers (dlq_reason, dlq_detail, source_topic, source_partition, source_offset, and
    trace_id when known). Waits out a broker outage; False only when asked to stop before it
    was published. Each record published counts in
    ``chatpic_kafka_dead_letters_total{source_topic,reason}``."""
    headers = [
        ("dlq_reason", reason.encode()),
        ("dlq_detail", detail[:300].encode()),
        ("source_topic", str(record.topic).encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]
    trace = tracing.record_trace(record) or tracing.trace_id.get()
    if trace:
        headers.append(("trace_id", trace.encode()))
    value = record.value if record.value is not None else b""
    while True:
        try:
            publisher.publish_raw(DEAD_LETTER_TOPIC, record.key, value, headers)
            break
        except PublishError:
            if stop.wait(retry_s):
                return False
    DEAD_LETTERS.labels(str(record.topic), reason).inc()
    log.warning(
        "record dead-lettered",
        extra={"reason": reason, "topic": record.topic, "offset": record.offset},
    )
    return True


class PositionGuard:
    """Notices a consumer position beyond its partition's end, and starts that partition again.

    A broker that lost its log (the local in-memory broker restarting; a topic deleted and
    recreated) answers fetches past the new end with nothing, not with an out-of-range error,
    and the client keeps the position it had across rebalances: the partition would be skipped
    until it grew past the old offset. Call ``check()`` after each poll; it looks every
    ``every_s`` seconds, from the client's local state plus the last fetch's high watermark.
    A partition no fetch has answered for yet (no high watermark: the client may never get one
    while its position is past the end) is measured with one ListOffsets request instead, once
    per stretch without a watermark, so a broker quirk in that answer cannot rewind it twice.
    Group consumers restart such a partition from the beginning (nothing was committed for the
    new log); ``to_end`` is for listeners that only want news."""

    def __init__(self, consumer: KafkaConsumer, *, to_end: bool = False, every_s: float = 2.0):
        self.consumer = consumer
        self.to_end = to_end
        self.every_s = every_s
        self._next = 0.0
        self._asked: set[TopicPartition] = set()  # measured without a watermark already

    def check(self) -> list[TopicPartition]:
        at = time.monotonic()
        if at < self._next:
            return []
        self._next = at + self.every_s
        ends: dict[TopicPartition, int] = {}
        unknown: list[TopicPartition] = []
        for tp in self.consumer.assignment():
            try:
                high = self.consumer.highwater(tp)
            except KafkaError:
                continue  # not assigned any more: next look
            if high is not None:
                ends[tp] = high
                self._asked.discard(tp)
            elif tp not in self._asked:
                unknown.append(tp)
        ends.update(self._ask_ends(unknown))
        behind_end = []
        for tp, end in ends.items():
            try:
                position = self.consumer.position(tp, timeout_ms=1000)
            except KafkaError:
                continue  # the position is being reset: next look
            if position is not None and position > end:
                behind_end.append(tp)
                log.warning(
                    "consumer position beyond the partition's end; the log was lost",
                    extra={
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "position": position,
                        "end": end,
                    },
                )
        if behind_end:
            if self.to_end:
                self.consumer.seek_to_end(*behind_end)
            else:
                self.consumer.seek_to_beginning(*behind_end)
        return behind_end

    def _ask_ends(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not partitions:
            return {}
        try:
            answer = self.consumer.end_offsets(partitions, timeout_ms=1000)
        except Exception as exc:  # the broker is away or slow: look again next time
            log.debug("end offsets not measured", extra={"err": repr(exc)})
            return {}
        self._asked.update(partitions)
        return {tp: int(end) for tp, end in answer.items() if end is not None}


def start_restarting(
    name: str,
    body: Callable[[], None],
    stop: threading.Event,
    *,
    on_failure: Callable[[Exception], None] | None = None,
    pause_s: float = 2.0,
) -> threading.Thread:
    """Run ``body`` (one consumer's life: make it, poll until ``stop``, close it) in a daemon
    thread named ``name``. Whatever ends it early (the broker unreachable at start, an error
    out of the loop) is logged, passed to ``on_failure``, and ``body`` runs again after
    ``pause_s``, until ``stop`` is set."""

    def run() -> None:
        while not stop.is_set():
            try:
                body()
            except Exception as exc:
                log.warning("consumer restarting", extra={"consumer": name, "err": repr(exc)})
                if on_failure is not None:
                    on_failure(exc)
                stop.wait(pause_s)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def make_consumer(settings: CommonSettings, group_id: str, topics: list[str]) -> KafkaConsumer:
    """Manual commits only: offsets move after the work is durable, never before."""
    session = settings.session_timeout_ms()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session,
        heartbeat_interval_ms=settings.heartbeat_interval_ms(),
        max_poll_records=8,
        max_poll_interval_ms=max(300_000, session),
        request_timeout_ms=max(30_000, session + 5000),
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )
    consumer.subscribe([topic_name(settings.topic_prefix, t) for t in topics])
    return consumer


def ensure_topics(settings: CommonSettings, partitions: int = 6, replication: int = 1) -> None:
    """Create the registry's topics if they are missing (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="chatpic-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [topic_name(settings.topic_prefix, t) for t in TOPICS]
        new = [
            NewTopic(name=t, num_partitions=partitions, replication_factor=replication)
            for t in wanted
            if t not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
            log.info("created topics", extra={"topics": [t.name for t in new]})
    finally:
        admin.close()


def ensure_topics_best_effort(settings: CommonSettings) -> bool:
    """At service start: declare the topics so a broker that lost them (or auto-creates them
    with one partition) gets the registry's layout. Never fatal: the broker may come later."""
    try:
        ensure_topics(settings)
    except Exception as exc:
        log.warning("could not ensure topics; continuing", extra={"err": repr(exc)})
        return False
    return True
