"""Every scanner process listens to `bank.changed` (all partitions, no consumer group: each
process must see every change) and applies the bank change feed at once. The feed in MongoDB
is the truth; the per-poll refresh in the consumer loop covers anything the broker lost."""

from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer, TopicPartition

from services.scanner import metrics
from services.scanner.banks import BankMatcher
from services.shared.events import BANK_CHANGED, EnvelopeError, decode, topic_name
from services.shared.kafka import RECONNECT_BACKOFF_MAX_MS, PositionGuard, start_restarting
from services.shared.settings import CommonSettings
from services.shared.tracing import record_trace, tracing

log = logging.getLogger(__name__)


def _consume(settings: CommonSettings, matcher: BankMatcher, stop: threading.Event) -> None:
    topic = topic_name(settings.topic_prefix, BANK_CHANGED.topic)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            stop.wait(2.0)
            return
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_end()  # the index was just built from MongoDB: only news matter
        guard = PositionGuard(consumer, to_end=True)
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            guard.check()
            records = [r for recs in batch.values() for r in recs]
            if not records:
                continue
            for record in records:
                with tracing(record_trace(record)):
                    try:
                        decode(record.value, BANK_CHANGED)
                    except EnvelopeError as exc:
                        log.warning(
                            "ignored a bad bank.changed record", extra={"reason": exc.reason}
                        )
            metrics.BANK_PUSHES.inc(len(records))
            with tracing(record_trace(records[-1])):  # the admin's request that changed it
                matcher.refresh()
    finally:
        consumer.close()


def start(
    settings: CommonSettings, matcher: BankMatcher, stop: threading.Event
) -> threading.Thread:
    return start_restarting("bank-changed", lambda: _consume(settings, matcher, stop), stop)
