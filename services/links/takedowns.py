"""The links side of a takedown: on `image.takedown`, end every link of the image and drop its
unused reveal tickets, so owner listings and counts show the removal within seconds.

This is the second line. Every link access already refuses a removed image from its status
(451), and the ticket route re-checks the status, so a late or lost event never serves bytes.

- One consumer group (``chatpic-links-takedowns`` by default): each event is handled by one
  links process. Handling is idempotent (only links not yet ended change), so at-least-once
  delivery is enough: offsets are committed only after the database writes.
- A record that cannot be decoded goes to the dead-letter topic at once, with its reason; a
  record whose handling keeps failing is retried with backoff, then dead-lettered (same header
  contract as the scanner's dead letters).
- Broker loss (the local broker is in memory and comes back empty): kafka-python reconnects
  (backoff capped at RECONNECT_BACKOFF_MAX_MS), finds the group unknown, rejoins and, with no
  committed offsets, reads the recreated topic from the start. A consumer that cannot be built
  (broker down at start) or that raises is closed and rebuilt after a pause, like the scanner's
  bank listener. Nothing here depends on the broker keeping data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pymongo.collection import Collection

from services.shared.events import (
    IMAGE_TAKEN_DOWN,
    Envelope,
    EnvelopeError,
    ImageTakenDown,
    decode,
)
from services.shared.kafka import (
    KafkaPublisher,
    PositionGuard,
    Publisher,
    dead_letter,
    make_consumer,
)
from services.shared.mongo import Doc
from services.shared.settings import CommonSettings
from services.shared.status import ImageStatus
from services.shared.tracing import record_trace, tracing

log = logging.getLogger(__name__)

GROUP_ID = "chatpic-links-takedowns"
ENDED_REASON = "removed"


def kill_links(links: Collection[Doc], image_id: str, reason: str, now: datetime) -> int:
    """End every link of ``image_id`` that is not ended yet; return how many changed.

    One ``update_many``; links already ended (revoked by their owner, or by an earlier delivery
    of this event) keep their reason and time, so a redelivery changes nothing."""
    res = links.update_many(
        {"image_id": image_id, "revoked": {"$ne": True}},
        {"$set": {"revoked": True, "ended_reason": ENDED_REASON, "ended_at": now}},
    )
    if res.modified_count:
        log.info(
            "links ended by a takedown",
            extra={"image_id": image_id, "links": res.modified_count, "reason": reason},
        )
    return res.modified_count


def drop_tickets(tickets: Collection[Doc], image_id: str) -> int:
    """Delete the image's reveal tickets that were not used yet (a used one fetches nothing)."""
    return tickets.delete_many({"image_id": image_id, "used_at": None}).deleted_count


def handle(
    payload: ImageTakenDown, links: Collection[Doc], tickets: Collection[Doc], now: datetime
) -> int:
    """Links first: a revoked link grants no new reveal, so no ticket appears after the drop
    (bar a reveal already past its redeem; the ticket route's status check covers that one)."""
    killed = kill_links(links, payload.image_id, payload.reason, now)
    drop_tickets(tickets, payload.image_id)
    return killed


def reconcile(
    images: Collection[Doc],
    links: Collection[Doc],
    tickets: Collection[Doc],
    now: datetime,
    limit: int = 100,
) -> int:
    """The same work for removed images whose links were not ended yet: an `image.takedown`
    the broker lost (it may forget everything) or dead-lettered still takes effect. Status
    already refuses every access; this keeps the link records and owner listings true."""
    ended = 0
    query = {"status": ImageStatus.REMOVED.value, "links_ended_at": None}
    for doc in images.find(query, {"_id": 1}).limit(limit):
        image_id = str(doc["_id"])
        ended += handle(ImageTakenDown(image_id=image_id, reason="removed"), links, tickets, now)
        images.update_one({"_id": image_id}, {"$set": {"links_ended_at": now}})
    return ended


class _Consumer(Protocol):
    """What the loop needs of a KafkaConsumer (a twin in the unit tests)."""

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]: ...

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None: ...


def _noop(_: Any) -> None:
    return None


def _always(_: str) -> bool:
    return True


def not_cleared(images: Collection[Doc]) -> Callable[[str], bool]:
    """Is a takedown of this image still in force? No once a reviewer cleared it again (an
    overturned appeal): a late delivery of the old event must not end the links it restored."""

    def check(image_id: str) -> bool:
        doc = images.find_one({"_id": image_id}, {"status": 1})
        return doc is None or doc.get("status") != ImageStatus.CLEARED.value

    return check


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TakedownConsumer:
    def __init__(
        self,
        consumer: _Consumer,
        links: Collection[Doc],
        tickets: Collection[Doc],
        publisher: Publisher,
        stop: threading.Event,
        *,
        on_killed: Callable[[int], None] = _noop,
        on_dead_letter: Callable[[str], None] = _noop,
        max_attempts: int = 5,
        retry_backoff_s: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
        in_force: Callable[[str], bool] = _always,
    ) -> None:
        self.in_force = in_force
        self.consumer = consumer
        self.links = links
        self.tickets = tickets
        self.publisher = publisher
        self.stop = stop
        self.on_killed = on_killed
        self.on_dead_letter = on_dead_letter
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.clock = clock

    def run(self) -> None:
        guard = PositionGuard(self.consumer)
        while not self.stop.is_set():
            self._handle_batch(self.consumer.poll(timeout_ms=500, max_records=8))
            guard.check()

    def _handle_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        try:
            for tp, records in batch.items():
                for record in records:
                    if self.stop.is_set() or not self._process(record):
                        return  # uncommitted: redelivered to whoever gets the partition
                    done[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
        finally:
            self._commit(done)

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # Lost the partition (rebalance, broker gone): the next owner re-reads the records,
            # and handling them again changes nothing.
            log.warning("takedown offset commit failed", extra={"err": repr(exc)})

    def _process(self, record: Any) -> bool:
        """Handle one record durably. False only when asked to stop before it was done.
        Every line logged meanwhile carries the record's trace id."""
        with tracing(record_trace(record)):
            try:
                env = decode(record.value, IMAGE_TAKEN_DOWN)
            except EnvelopeError as exc:
                return self._dead_letter(record, exc.reason, exc.detail)
            with tracing(env.trace_id):
                return self._handle(record, env)

    def _handle(self, record: Any, env: Envelope[ImageTakenDown]) -> bool:
        for attempt in range(1, self.max_attempts + 1):
            try:
                if not self.in_force(env.payload.image_id):
                    log.info("stale takedown skipped", extra={"image_id": env.payload.image_id})
                    return True
                killed = handle(env.payload, self.links, self.tickets, self.clock())
            except Exception as exc:
                log.warning(
                    "takedown attempt failed",
                    extra={"image_id": env.payload.image_id, "attempt": attempt, "err": repr(exc)},
                )
                if attempt < self.max_attempts and self.stop.wait(self.retry_backoff_s * attempt):
                    return False
                continue
            if killed:
                self.on_killed(killed)
            log.info(
                "image.takedown handled", extra={"image_id": env.payload.image_id, "links": killed}
            )
            return True
        return self._dead_letter(record, "handler_failed", env.payload.image_id)

    def _dead_letter(self, record: Any, reason: str, detail: str) -> bool:
        if not dead_letter(self.publisher, record, reason, detail, self.stop):
            return False
        self.on_dead_letter(reason)
        return True


def start(
    settings: CommonSettings,
    links_col: Collection[Doc],
    tickets_col: Collection[Doc],
    stop: threading.Event,
    *,
    on_killed: Callable[[int], None] = _noop,
    on_dead_letter: Callable[[str], None] = _noop,
    group_id: str = GROUP_ID,
    publisher: Publisher | None = None,
    max_attempts: int = 5,
    retry_backoff_s: float = 1.0,
    in_force: Callable[[str], bool] = _always,
) -> threading.Thread:
    """Consume `image.takedown` in a daemon thread until ``stop`` is set. A consumer that fails
    (broker unreachable at start, or any error out of the loop) is closed and rebuilt after a
    pause. ``publisher`` (for dead letters) defaults to a KafkaPublisher owned, and closed, by
    the thread. ``on_killed`` gets the number of links each takedown ended (0 is not reported);
    ``on_dead_letter`` the reason of each dead-lettered record; ``in_force`` (see
    ``not_cleared``) skips a takedown that a later decision undid."""

    def run() -> None:
        dlq = publisher if publisher is not None else KafkaPublisher(settings)
        try:
            while not stop.is_set():
                try:
                    _consume(dlq)
                except Exception as exc:
                    log.warning("takedown consumer restarting", extra={"err": repr(exc)})
                    stop.wait(2.0)
        finally:
            if publisher is None:
                dlq.close()

    def _consume(dlq: Publisher) -> None:
        consumer = make_consumer(settings, group_id, [IMAGE_TAKEN_DOWN.topic])
        try:
            TakedownConsumer(
                consumer,
                links_col,
                tickets_col,
                dlq,
                stop,
                on_killed=on_killed,
                on_dead_letter=on_dead_letter,
                max_attempts=max_attempts,
                retry_backoff_s=retry_backoff_s,
                in_force=in_force,
            ).run()
        finally:
            try:
                consumer.close(autocommit=False, timeout_ms=2000)
            except Exception as exc:
                log.debug("closing the takedown consumer raised", extra={"err": repr(exc)})

    thread = threading.Thread(target=run, name="links-takedowns", daemon=True)
    thread.start()
    return thread
