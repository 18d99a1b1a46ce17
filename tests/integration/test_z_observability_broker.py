"""Losing the broker, as an SRE sees it: the HTTP services stay ready but list the broker as
degraded, the scanner is not ready, chatpic_dependency_up says broker 0, lag measurements fail
(counted) instead of showing stale numbers, /readyz stays fast; and everything comes back on
its own once the (empty) broker is back. Runs late: it restarts the broker."""

from __future__ import annotations

import time

from tests.integration.observability_helpers import SERVICES, eventually, samples, value
from tests.live import Live

HTTP_SERVICES = [s for s in SERVICES if s != "scanner"]


def broker_up(live: Live, service: str) -> float | None:
    client = getattr(live, service)
    return value(client, "chatpic_dependency_up", service=service, dependency="broker")


def scanner_lag_series(live: Live) -> int:
    return sum(
        1
        for labels, _ in samples(live.scanner, "chatpic_kafka_consumer_lag")
        if labels.get("group") == "chatpic-scanner"
    )


def lag_failures(live: Live) -> float:
    found = value(live.scanner, "chatpic_kafka_lag_check_failures_total", group="chatpic-scanner")
    return found or 0.0


def test_broker_loss_degrades_http_services_and_unreadies_the_scanner(live: Live) -> None:
    failures_before = lag_failures(live)
    live.stack.stop_process("broker")
    try:
        for service in SERVICES:
            eventually(lambda s=service: broker_up(live, s) == 0, 15, f"{service} sees it")
        for service in HTTP_SERVICES:
            started = time.monotonic()
            resp = getattr(live, service).get("/readyz")
            assert time.monotonic() - started < 1.5
            assert resp.status_code == 200, (service, resp.text)
            assert resp.json()["ready"] is True and resp.json()["degraded"] == ["broker"]
        scanner = live.scanner.get("/readyz")
        assert scanner.status_code == 503
        assert scanner.json()["checks"]["broker"] is False and scanner.json()["degraded"] == []
        eventually(lambda: lag_failures(live) > failures_before, 15, "lag failures counted")
        assert scanner_lag_series(live) == 0  # unknown, not stale
    finally:
        live.stack.start_broker()  # empty: no topics, no groups, no offsets
        live.stack.create_topics()

    for service in SERVICES:
        eventually(lambda s=service: broker_up(live, s) == 1, 20, f"{service} sees it back")
    eventually(lambda: live.scanner.get("/readyz").status_code == 200, 20, "scanner ready")
    for service in HTTP_SERVICES:
        assert getattr(live, service).get("/readyz").json()["degraded"] == []
    eventually(lambda: scanner_lag_series(live) == 6, 20, "lag measured again")
