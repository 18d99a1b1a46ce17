"""The links takedown consumer on the real broker and database: an `image.takedown` ends every
link of the image within seconds and drops its unused tickets; a redelivery changes nothing;
garbage goes to the dead-letter topic while consumption goes on; the thread stops cleanly; and
it keeps working after the in-memory broker dies and comes back empty."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from deploy.local.stack import Stack, StackPorts
from services.links import takedowns
from services.shared.events import (
    DEAD_LETTER_TOPIC,
    IMAGE_TAKEN_DOWN,
    ImageTakenDown,
    make_envelope,
    topic_name,
)
from services.shared.kafka import KafkaPublisher, PublishError, ensure_topics
from services.shared.settings import CommonSettings
from tests.live import Live


def settings_for(live: Live, bootstrap: str, prefix: str) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        mongo_uri=f"mongodb://127.0.0.1:{live.stack.ports.mongo}/",
    )


def link_doc(image_id: str, **extra: Any) -> dict[str, Any]:
    t = datetime.now(UTC)
    return {
        "_id": uuid.uuid4().hex,
        "link_id": uuid.uuid4().hex,
        "image_id": image_id,
        "created_at": t,
        "expires_at": t + timedelta(hours=1),
        "alive_until": t + timedelta(hours=1),
        "purge_at": t + timedelta(hours=2),
        "max_views": 3,
        "remaining": 3,
        "views": 0,
        "max_views_per_viewer": None,
        "password_hash": None,
        "end_of_session": False,
        "session_hash": None,
        **extra,
    }


def ticket_doc(image_id: str, used: bool = False) -> dict[str, Any]:
    t = datetime.now(UTC)
    return {
        "_id": uuid.uuid4().hex,
        "link_id": uuid.uuid4().hex,
        "image_id": image_id,
        "expires_at": t + timedelta(seconds=60),
        "used_at": t if used else None,
        "created_at": t,
    }


def wait_until(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def publish_takedown(publisher: KafkaPublisher, image_id: str, timeout: float = 30) -> None:
    """Publish, waiting out a broker that is (re)starting."""
    env = make_envelope(IMAGE_TAKEN_DOWN, image_id, ImageTakenDown(image_id=image_id, reason="t"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            publisher.publish(IMAGE_TAKEN_DOWN.topic, env)
            return
        except PublishError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ended(live: Live, image_id: str) -> list[dict[str, Any]]:
    return list(live.db.links.find({"image_id": image_id, "revoked": True}))


def dead_letters(settings: CommonSettings, timeout: float = 10) -> list[Any]:
    topic = topic_name(settings.topic_prefix, DEAD_LETTER_TOPIC)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not found:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(records)
        return found
    finally:
        consumer.close()


def test_takedown_ends_every_link_drops_tickets_and_dead_letters_garbage(live: Live) -> None:
    prefix = f"lt-{uuid.uuid4().hex[:8]}."
    settings = settings_for(live, live.bootstrap, prefix)
    ensure_topics(settings)
    image, other = uuid.uuid4().hex, uuid.uuid4().hex
    live.db.links.insert_many(
        [
            link_doc(image),
            link_doc(image, remaining=0, views=3),  # used up: still listed, now as removed
            link_doc(image, revoked=True, ended_reason="revoked", ended_at=datetime.now(UTC)),
            link_doc(other),
        ]
    )
    unused, used, others = ticket_doc(image), ticket_doc(image, used=True), ticket_doc(other)
    live.db.tickets.insert_many([unused, used, others])

    killed: list[int] = []
    stop = threading.Event()
    thread = takedowns.start(
        settings,
        live.db.links,
        live.db.tickets,
        stop,
        on_killed=killed.append,
        group_id=f"{prefix}links-takedowns",
    )
    publisher = KafkaPublisher(settings)
    try:
        publish_takedown(publisher, image)
        took = wait_until(lambda: len(ended(live, image)) == 3, timeout=10)
        docs = {d["_id"]: d for d in live.db.links.find({"image_id": image})}
        reasons = sorted(d["ended_reason"] for d in docs.values())
        assert reasons == ["removed", "removed", "revoked"]  # the owner's revocation stays
        assert all(isinstance(d["ended_at"], datetime) for d in docs.values())
        wait_until(lambda: live.db.tickets.find_one({"_id": unused["_id"]}) is None, timeout=5)
        assert live.db.tickets.find_one({"_id": used["_id"]}) is not None
        assert live.db.tickets.find_one({"_id": others["_id"]}) is not None
        assert live.db.links.find_one({"image_id": other}).get("revoked") is not True
        assert killed == [2], took

        # A redelivery changes nothing; garbage is dead-lettered and consumption goes on.
        publish_takedown(publisher, image)
        publisher.publish_raw(IMAGE_TAKEN_DOWN.topic, b"junk", b"{not json", [])
        publish_takedown(publisher, other)
        wait_until(lambda: len(ended(live, other)) == 1, timeout=10)
        wait_until(lambda: live.db.tickets.find_one({"_id": others["_id"]}) is None, timeout=5)
        assert sorted(killed) == [1, 2]
        assert [d["ended_reason"] for d in ended(live, image)].count("removed") == 2

        letters = dead_letters(settings)
        assert [r.value for r in letters] == [b"{not json"]
        headers = {k: v.decode() for k, v in letters[0].headers}
        assert headers["dlq_reason"] == "invalid_json"
        assert headers["source_topic"] == topic_name(prefix, IMAGE_TAKEN_DOWN.topic)
    finally:
        stop.set()
        thread.join(5)
        publisher.close()
    assert not thread.is_alive()


def test_takedowns_survive_losing_the_broker(live: Live, tmp_path: Path) -> None:
    """A private broker (the shared one stays up for the other tests) dies and comes back
    empty: the same consumer thread rejoins and handles takedowns published afterwards."""
    broker = Stack(var_dir=tmp_path, ports=StackPorts.free())
    broker.start_broker()
    broker.create_topics()
    settings = settings_for(live, f"127.0.0.1:{broker.ports.broker}", "chatpic.")
    before, after = uuid.uuid4().hex, uuid.uuid4().hex
    live.db.links.insert_many([link_doc(before), link_doc(after), link_doc(after)])
    stop = threading.Event()
    thread = takedowns.start(settings, live.db.links, live.db.tickets, stop)
    publisher = KafkaPublisher(settings)
    try:
        publish_takedown(publisher, before)
        wait_until(lambda: len(ended(live, before)) == 1, timeout=10)

        # (A fresh publisher: this test is about the consumer, not the producer's recovery.)
        publisher.close()
        broker.stop_process("broker")
        time.sleep(2)  # the consumer notices: its connections fail
        broker.start_broker()  # empty: no topics, no group, no offsets
        broker.create_topics()
        publisher = KafkaPublisher(settings)
        publish_takedown(publisher, after)
        wait_until(lambda: len(ended(live, after)) == 2, timeout=20)
    finally:
        stop.set()
        thread.join(5)
        publisher.close()
        broker.stop()
    assert not thread.is_alive()
