"""Run one scanner process: python -m services.scanner (scale out with more processes)."""

from __future__ import annotations

import logging
import signal
import threading

from services.scanner import bank_listener
from services.scanner.consumer import consume_until_stopped
from services.scanner.health import serve
from services.scanner.model import NsfwModel, card_from_setting, load_card
from services.scanner.policy import PolicyThresholds
from services.scanner.settings import ScannerSettings
from services.scanner.worker import ScanWorker
from services.shared.events import IMAGE_UPLOADED
from services.shared.kafka import KafkaPublisher, ensure_topics_best_effort
from services.shared.lag import lag_monitor
from services.shared.logs import configure_logging
from services.shared.memory import limit_malloc_arenas
from services.shared.mongo import BlobStore, MongoProbe, database, make_client
from services.shared.opsmetrics import announce_build
from services.shared.readiness import BrokerProbe, Dependencies
from services.shared.repos import BankRepo, ImageRepo

log = logging.getLogger("services.scanner")


def main() -> None:
    settings = ScannerSettings()
    configure_logging("scanner", settings.log_level)
    limit_malloc_arenas()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    client = make_client(settings)
    db = database(client, settings)
    state = {"model": False, "consuming": False}
    probe = MongoProbe(settings)
    deps = Dependencies(
        "scanner",
        {
            "database": probe,
            "broker": BrokerProbe(settings.kafka_bootstrap),
            "model": lambda: state["model"],
        },
        settings.dependency_check_interval_s,
    )
    deps.start()
    announce_build("scanner", settings.build_version)
    server = serve(
        settings.metrics_host,
        settings.metrics_port,
        lambda: {
            "database": deps.check("database"),
            "broker": deps.last("broker"),
            "model": deps.check("model"),
            "consumer": state["consuming"],
        },
    )
    card = card_from_setting(
        settings.model_card, review=settings.review_threshold, blocked=settings.blocked_threshold
    )
    model = NsfwModel(card, threads=settings.model_threads)
    shadow_path = settings.shadow_model_card.strip()
    shadow = (
        NsfwModel(load_card(shadow_path), threads=settings.model_threads) if shadow_path else None
    )
    state["model"] = True
    publisher = KafkaPublisher(settings)
    worker = ScanWorker(
        images=ImageRepo(db),
        blobs=BlobStore(db),
        banks=BankRepo(db),
        model=model,
        card=card,
        publisher=publisher,
        thresholds=PolicyThresholds(
            review=settings.review_threshold,
            blocked=settings.blocked_threshold,
            hash_max_distance=settings.hash_max_distance,
        ),
        max_frames=settings.scan_frames,
        decode_size=settings.scan_decode_size,
        shadow=shadow,
        vault=BlobStore(db, "evidence"),
        evidence_retention_days=settings.evidence_retention_days,
    )
    ensure_topics_best_effort(settings)
    try:
        worker.index.refresh()  # build the bank index before the first record
    except Exception:
        log.warning("bank index not built yet (database?); the first scan builds it")
    bank_listener.start(settings, worker.index, stop)
    lag = lag_monitor(settings, {settings.group_id: [IMAGE_UPLOADED.topic]})
    lag.start()
    log.info(
        "scanner started",
        extra={
            "model": card.name,
            "version": model.version,
            "shadow": None if shadow is None else f"{shadow.card.name}@{shadow.version}",
        },
    )
    try:
        consume_until_stopped(
            settings, worker, publisher, stop, lambda on: state.__setitem__("consuming", on)
        )
    finally:
        lag.stop()
        publisher.close()
        server.shutdown()
        deps.stop()
        probe.close()
        client.close()
        log.info("scanner stopped")


if __name__ == "__main__":
    main()
