"""Between rooms processes: every frame a process broadcasts is also published to
``room.relay`` (key = room id) by a thread of its own, so the event loop never waits for the
broker and an outage only costs the cross-process copies. Every process reads every partition
of ``room.relay`` and ``room.moderated`` (manual assignment, no group, from the end: only news
matter; MongoDB holds the truth and the periodic refresh repairs anything lost)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from services.rooms import metrics
from services.shared.events import (
    ROOM_MODERATED,
    ROOM_RELAY,
    EnvelopeError,
    RoomModerated,
    RoomRelay,
    decode,
    make_envelope,
    topic_name,
)
from services.shared.kafka import (
    RECONNECT_BACKOFF_MAX_MS,
    PositionGuard,
    Publisher,
    PublishError,
    start_restarting,
)
from services.shared.settings import CommonSettings
from services.shared.tracing import record_trace, tracing

log = logging.getLogger(__name__)


class RelayOut:
    """A bounded queue drained by one publishing thread."""

    def __init__(self, publisher: Publisher, instance_id: str, size: int = 10_000) -> None:
        self.publisher = publisher
        self.instance_id = instance_id
        self.queue: queue.Queue[tuple[str, dict[str, object]] | None] = queue.Queue(size)
        self.thread = threading.Thread(target=self._run, name="rooms-relay-out", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def __call__(self, room_id: str, frame: dict[str, object]) -> None:
        try:
            self.queue.put_nowait((room_id, frame))
        except queue.Full:
            metrics.RELAY_FAILURES.labels("queue_full").inc()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            room_id, frame = item
            payload = RoomRelay(room_id=room_id, origin=self.instance_id, frame=frame)
            try:
                self.publisher.publish(
                    ROOM_RELAY.topic, make_envelope(ROOM_RELAY, room_id, payload)
                )
                metrics.RELAY_PUBLISHED.inc()
            except PublishError:
                metrics.RELAY_FAILURES.labels("broker").inc()
            except Exception:
                metrics.RELAY_FAILURES.labels("error").inc()
                log.exception("relay publish failed")

    def stop(self, timeout: float = 2.0) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(None)
            self.thread.join(timeout)


OnRelay = Callable[[str, dict[str, object]], None]
OnModerated = Callable[[RoomModerated], None]


def _listen(
    settings: CommonSettings,
    instance_id: str,
    on_relay: OnRelay,
    on_moderated: OnModerated,
    stop: threading.Event,
) -> None:
    relay_topic = topic_name(settings.topic_prefix, ROOM_RELAY.topic)
    mod_topic = topic_name(settings.topic_prefix, ROOM_MODERATED.topic)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        fetch_max_wait_ms=20,
    )
    try:
        assigned = []
        for topic in (relay_topic, mod_topic):
            partitions = consumer.partitions_for_topic(topic) or set()
            assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            stop.wait(2.0)
            return
        consumer.assign(assigned)
        consumer.seek_to_end()
        guard = PositionGuard(consumer, to_end=True)
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=200)
            guard.check()
            for tp, records in batch.items():
                for record in records:
                    with tracing(record_trace(record)):
                        _handle(
                            record.value,
                            tp.topic == relay_topic,
                            instance_id,
                            on_relay,
                            on_moderated,
                        )
    finally:
        consumer.close()


def _handle(
    value: bytes | None,
    is_relay: bool,
    instance_id: str,
    on_relay: OnRelay,
    on_moderated: OnModerated,
) -> None:
    try:
        if is_relay:
            relayed = decode(value, ROOM_RELAY).payload
            if relayed.origin != instance_id:
                on_relay(relayed.room_id, dict(relayed.frame))
        else:
            on_moderated(decode(value, ROOM_MODERATED).payload)
    except EnvelopeError as exc:
        log.warning("ignored a bad room record", extra={"reason": exc.reason})


def start_listener(
    settings: CommonSettings,
    instance_id: str,
    on_relay: OnRelay,
    on_moderated: OnModerated,
    stop: threading.Event,
) -> threading.Thread:
    return start_restarting(
        "rooms-relay-in",
        lambda: _listen(settings, instance_id, on_relay, on_moderated, stop),
        stop,
    )
