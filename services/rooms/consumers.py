"""Consumer groups of the rooms service: ``image.scanned`` (group ``chatpic-rooms-scans``: a
cleared image's messages become visible, others refused) and ``image.takedown`` (group
``chatpic-rooms-takedowns``: the image's messages are removed). Each event is handled by one
rooms process, which broadcasts (and relays) the result. Handling is idempotent (conditional
updates) and offsets are committed after it; a failure rebuilds the consumer, so the records
come again. A record that cannot be read goes to the dead-letter topic (shared helper, same
headers as the scanner's and links'). The sweeper's reconcile settles anything the broker
lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from services.rooms import metrics
from services.shared.events import (
    IMAGE_SCANNED,
    IMAGE_TAKEN_DOWN,
    EnvelopeError,
    EventType,
    decode,
)
from services.shared.kafka import (
    PositionGuard,
    Publisher,
    dead_letter,
    make_consumer,
    start_restarting,
)
from services.shared.settings import CommonSettings
from services.shared.tracing import record_trace, tracing

log = logging.getLogger(__name__)

SCANS_GROUP = "chatpic-rooms-scans"
TAKEDOWNS_GROUP = "chatpic-rooms-takedowns"


def process(
    record: Any,
    event: EventType[Any],
    handle: Callable[[Any], None],
    publisher: Publisher,
    stop: threading.Event,
) -> bool:
    """Handle one record with its trace id on every log line. A record that cannot be read
    goes to the dead-letter topic with its reason (waiting out a broker outage). False only
    when asked to stop before that was done; ``handle`` raising propagates."""
    with tracing(record_trace(record)):
        try:
            env = decode(record.value, event)
        except EnvelopeError as exc:
            return dead_letter(publisher, record, exc.reason, exc.detail, stop)
        with tracing(env.trace_id):
            handle(env.payload)
    return True


def _consume(
    settings: CommonSettings,
    group: str,
    event: EventType[Any],
    handle: Callable[[Any], None],
    stop: threading.Event,
    publisher: Publisher,
) -> None:
    consumer = make_consumer(settings, group, [event.topic])
    try:
        guard = PositionGuard(consumer)
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500, max_records=8)
            done: dict[TopicPartition, OffsetAndMetadata] = {}
            try:
                for tp, records in batch.items():
                    for record in records:
                        # handle() raising: nothing further is committed (the consumer is
                        # rebuilt and the records come again).
                        if not process(record, event, handle, publisher, stop):
                            return  # stopping: the record stays uncommitted
                        done[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
            finally:
                if done:
                    try:
                        consumer.commit(done)
                    except KafkaError as exc:
                        log.warning("commit failed", extra={"group": group, "err": repr(exc)})
            guard.check()
    finally:
        try:
            consumer.close(autocommit=False, timeout_ms=2000)
        except Exception as exc:
            log.debug("closing a consumer raised", extra={"err": repr(exc)})


def start(
    settings: CommonSettings,
    group: str,
    event: EventType[Any],
    handle: Callable[[Any], None],
    stop: threading.Event,
    name: str,
    publisher: Publisher,
) -> threading.Thread:
    """Consume ``event`` as ``group`` in a daemon thread until ``stop``; ``publisher`` takes
    the dead letters."""
    return start_restarting(
        f"rooms-{name}",
        lambda: _consume(settings, group, event, handle, stop, publisher),
        stop,
        on_failure=lambda _exc: metrics.CONSUMER_ERRORS.labels(name).inc(),
    )


__all__ = ["IMAGE_SCANNED", "IMAGE_TAKEN_DOWN", "start"]
