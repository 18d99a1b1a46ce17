"""C20: a handler slower than the group's session timeout, with two members of one consumer
group on the real broker: consumption finishes (no endless rebalance loop) and every image gets
exactly one verdict (bounded batches, commit after the work, verdicts idempotent by image id)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from kafka import KafkaProducer

from services.scanner.consumer import ScanConsumer
from services.scanner.settings import ScannerSettings
from services.shared.events import IMAGE_UPLOADED, ImageUploaded, encode, make_envelope
from services.shared.kafka import MemoryPublisher, ensure_topics, make_consumer
from tests.live import Live


@dataclass
class SlowIdempotentWorker:
    """Takes longer than the session timeout per record; stores a verdict once per image."""

    verdicts: dict[str, str]
    lock: threading.Lock
    handled: list[str] = field(default_factory=list)

    @dataclass
    class _Index:
        def refresh(self) -> None:
            return None

    index: _Index = field(default_factory=_Index)

    def handle(self, env: object) -> None:
        image_id = env.payload.image_id  # type: ignore[attr-defined]
        time.sleep(2.5)  # > the local 2 s session timeout
        with self.lock:
            self.handled.append(image_id)
            self.verdicts.setdefault(image_id, "cleared")  # the conditional update's effect


def test_C20_slow_handler_two_members_one_verdict_each(live: Live) -> None:
    prefix = f"c20-{uuid.uuid4().hex[:8]}."
    settings = ScannerSettings(
        kafka_bootstrap=live.bootstrap, topic_prefix=prefix, group_id=f"{prefix}group"
    )
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=live.bootstrap)
    ids = [uuid.uuid4().hex for _ in range(6)]
    for image_id in ids:
        env = make_envelope(
            IMAGE_UPLOADED, image_id, ImageUploaded(image_id=image_id, content_type="x", size=1)
        )
        producer.send(prefix + IMAGE_UPLOADED.topic, key=image_id.encode(), value=encode(env))
    producer.flush()
    producer.close()

    verdicts: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    workers = [SlowIdempotentWorker(verdicts, lock) for _ in range(2)]
    threads = []
    for worker in workers:
        consumer = make_consumer(settings, settings.group_id, [IMAGE_UPLOADED.topic])
        loop = ScanConsumer(consumer, worker, MemoryPublisher(), settings, stop)  # type: ignore[arg-type]
        thread = threading.Thread(target=lambda lp=loop, c=consumer: (lp.run(), c.close()))
        thread.start()
        threads.append(thread)
    try:
        deadline = time.monotonic() + 90
        while len(verdicts) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert sorted(verdicts) == sorted(ids)  # everything consumed: no endless rebalance
    handled = [i for w in workers for i in w.handled]
    assert set(handled) == set(ids)
    assert len(handled) <= 2 * len(ids)  # at most a redelivery each, never a loop
