"""Kafka transport for the scanner: poll, decode, hand to the worker, commit after the work.

- Offsets are committed only once every record of the batch has a stored verdict.
- A record that cannot be decoded goes to the dead-letter topic with its reason, at once.
- A record whose handling keeps failing (database down, ...) is retried with backoff, then
  dead-lettered after ``max_attempts``; the image stays pending, so ingest's re-publisher
  brings it back once things recover. No endless retry of one record.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from services.scanner import metrics
from services.scanner.settings import ScannerSettings
from services.scanner.worker import ScanWorker
from services.shared.events import IMAGE_UPLOADED, Envelope, EnvelopeError, ImageUploaded, decode
from services.shared.kafka import (
    PositionGuard,
    Publisher,
    PublishError,
    dead_letter,
    make_consumer,
)
from services.shared.tracing import record_trace, tracing

log = logging.getLogger(__name__)


class ScanConsumer:
    def __init__(
        self,
        consumer: KafkaConsumer,
        worker: ScanWorker,
        publisher: Publisher,
        settings: ScannerSettings,
        stop: threading.Event,
    ) -> None:
        self.consumer = consumer
        self.worker = worker
        self.publisher = publisher
        self.settings = settings
        self.stop = stop

    def run(self) -> None:
        guard = PositionGuard(self.consumer)
        while not self.stop.is_set():
            batch = self.consumer.poll(timeout_ms=500, max_records=8)
            self._refresh_banks()
            guard.check()
            for tp, records in batch.items():
                for record in records:
                    if self.stop.is_set():
                        return  # uncommitted: redelivered to whoever gets the partition
                    if not self._process(record):
                        return  # stopping mid-retry: leave the offset uncommitted
                    self._commit(tp, record.offset + 1)

    def _refresh_banks(self) -> None:
        """Apply bank changes even while idle, so a new entry is enforced (and its propagation
        time measured) within about a poll interval, not only at the next scan."""
        try:
            self.worker.index.refresh()
        except Exception as exc:
            log.warning("bank refresh failed; next scan retries", extra={"err": repr(exc)})

    def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        except KafkaError as exc:
            # Lost the partition in a rebalance: the new owner re-reads the record, and the
            # verdict write is idempotent, so nothing is lost or decided twice.
            log.warning("offset commit failed", extra={"err": repr(exc), "offset": offset})

    def _process(self, record: Any) -> bool:
        """Handle one record durably. False only when asked to stop before it was done.
        Every line logged meanwhile carries the record's trace id (its envelope's, or its
        header's when the envelope cannot be read)."""
        with tracing(record_trace(record)):
            try:
                env = decode(record.value, IMAGE_UPLOADED)
            except EnvelopeError as exc:
                return self._dead_letter(record, exc.reason, exc.detail)
            with tracing(env.trace_id):
                return self._handle(record, env)

    def _handle(self, record: Any, env: Envelope[ImageUploaded]) -> bool:
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                self.worker.handle(env)
                return True
            except PublishError as exc:
                # The verdict is stored; only the announcement failed. Consumers of
                # image.scanned read status from the database, so this is not lost work.
                log.warning("verdict stored, announce failed", extra={"err": str(exc)})
                return True
            except Exception as exc:
                metrics.RETRIES.inc()
                log.warning(
                    "scan attempt failed",
                    extra={"image_id": env.payload.image_id, "attempt": attempt, "err": repr(exc)},
                )
                if self.stop.wait(self.settings.retry_backoff_s * attempt):
                    return False
        return self._dead_letter(record, "handler_failed", env.payload.image_id)

    def _dead_letter(self, record: Any, reason: str, detail: str) -> bool:
        metrics.DEAD_LETTERS.labels(reason).inc()
        return dead_letter(self.publisher, record, reason, detail, self.stop)


def consume_until_stopped(
    settings: ScannerSettings,
    worker: ScanWorker,
    publisher: Publisher,
    stop: threading.Event,
    on_consuming: Callable[[bool], None],
    *,
    new_consumer: Callable[[], KafkaConsumer] | None = None,
    pause_s: float = 2.0,
) -> None:
    """The scanner's consuming life, until ``stop``. Whatever ends a consumer early (the broker
    lost while the group was being joined raises out of ``poll``) is logged and counted, the
    consumer is closed without committing, and a new one takes its place after ``pause_s``: the
    process never exits for a broker's sake, and uncommitted records are read again."""

    def make() -> KafkaConsumer:
        return make_consumer(settings, settings.group_id, [IMAGE_UPLOADED.topic])

    while not stop.is_set():
        consumer: KafkaConsumer | None = None
        try:
            consumer = (new_consumer or make)()
            on_consuming(True)
            ScanConsumer(consumer, worker, publisher, settings, stop).run()
        except Exception as exc:
            metrics.CONSUMER_RESTARTS.inc()
            log.warning("scanner consumer failed; a new one starts", extra={"err": repr(exc)})
        finally:
            on_consuming(False)
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close(autocommit=False)
        if not stop.is_set():
            stop.wait(pause_s)
