"""Readiness: which checks make a service unready and which only degrade it, the cached
dependency checks behind chatpic_dependency_up, the broker's protocol probe (bounded when the
broker hangs), and the scanner's health server with the same semantics."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.scanner.health import serve
from services.shared.readiness import Dependencies, bootstrap_servers, broker_answers, readiness


def test_http_services_need_the_database_and_are_only_degraded_without_the_broker() -> None:
    required = ("database",)
    assert readiness({"database": True, "broker": True}, required) == {
        "ready": True,
        "checks": {"database": True, "broker": True},
        "degraded": [],
    }
    assert readiness({"database": True, "broker": False}, required)["degraded"] == ["broker"]
    assert readiness({"database": True, "broker": False}, required)["ready"] is True
    down = readiness({"database": False, "broker": False}, required)
    assert down["ready"] is False and down["degraded"] == ["broker"]
    assert readiness({"broker": True}, required)["ready"] is False  # a missing check fails


def test_the_scanner_needs_everything() -> None:
    checks = {"database": True, "broker": False, "model": True, "consumer": True}
    body = readiness(checks, required=list(checks))
    assert body == {"ready": False, "checks": checks, "degraded": []}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def up(service: str, dependency: str) -> float | None:
    return REGISTRY.get_sample_value(
        "chatpic_dependency_up", {"service": service, "dependency": dependency}
    )


def test_dependency_checks_set_the_gauge_and_cached_answers_go_stale() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    state = {"database": True, "broker": True}
    clock = Clock()

    def broken() -> bool:
        raise RuntimeError("probe blew up")

    deps = Dependencies(
        service,
        {"database": lambda: state["database"], "broker": lambda: state["broker"], "x": broken},
        interval_s=5,
        clock=clock,
    )
    assert deps.last("broker") is False  # never checked: not known to be up
    assert deps.check_all() == {"database": True, "broker": True, "x": False}
    assert (up(service, "database"), up(service, "broker"), up(service, "x")) == (1, 1, 0)
    state["broker"] = False
    assert deps.last("broker") is True  # the cached answer, until the next check
    deps.check("broker")
    assert deps.last("broker") is False and up(service, "broker") == 0
    state["broker"] = True
    deps.check("broker")
    clock.now += 3 * 5 + 1
    assert deps.last("broker") is True
    clock.now += 2
    assert deps.last("broker") is False  # nobody refreshed it for three intervals


def test_the_dependency_thread_checks_at_once_and_stops() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    calls: list[float] = []

    def check() -> bool:
        calls.append(time.monotonic())
        return True

    deps = Dependencies(service, {"broker": check}, interval_s=0.05)
    deps.start()
    try:
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(calls) >= 3 and deps.last("broker") is True
    finally:
        deps.stop()
    settled = len(calls)
    time.sleep(0.15)
    assert len(calls) == settled


def test_bootstrap_servers_are_parsed() -> None:
    assert bootstrap_servers("a:1, b:2,[::1]:3,c") == [
        ("a", 1),
        ("b", 2),
        ("::1", 3),
        ("c", 9092),
    ]


class FakeBroker:
    """Answers ApiVersions v0 like a broker (``mode='ok'``), or with an error code, or not at
    all (a hung broker: the connection is accepted and nothing comes back)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[int, int]] = []
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "hang":
                self.held.append(conn)
                continue
            with conn:
                (size,) = struct.unpack(">i", conn.recv(4))
                request = conn.recv(size)
                api_key, version, correlation = struct.unpack(">hhi", request[:8])
                self.requests.append((api_key, version))
                error = 0 if self.mode == "ok" else 35
                body = struct.pack(">ihi", correlation, error, 0)
                conn.sendall(struct.pack(">i", len(body)) + body)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[FakeBroker]:
    fake = FakeBroker(request.param)
    yield fake
    fake.close()


@pytest.mark.parametrize("broker", ["ok"], indirect=True)
def test_the_broker_probe_speaks_the_kafka_protocol(broker: FakeBroker) -> None:
    assert broker_answers(f"127.0.0.1:{broker.port}") is True
    assert broker.requests == [(18, 0)]  # ApiVersions v0
    # The first server down, the next one answers.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    assert broker_answers(f"127.0.0.1:{dead_port},127.0.0.1:{broker.port}") is True
    assert broker_answers(f"127.0.0.1:{dead_port}") is False


@pytest.mark.parametrize("broker", ["error"], indirect=True)
def test_a_broker_answering_with_an_error_is_not_up(broker: FakeBroker) -> None:
    assert broker_answers(f"127.0.0.1:{broker.port}") is False


@pytest.mark.parametrize("broker", ["hang"], indirect=True)
def test_a_hung_broker_costs_at_most_the_timeout(broker: FakeBroker) -> None:
    started = time.monotonic()
    assert broker_answers(f"127.0.0.1:{broker.port}", timeout_s=0.3) is False
    assert time.monotonic() - started < 0.8


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_scanner_health_server_has_the_same_readiness_shape() -> None:
    checks = {"database": True, "broker": True, "model": True, "consumer": True}
    server = serve("127.0.0.1", 0, lambda: dict(checks))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(f"{base}/readyz") == (200, {"ready": True, "checks": checks, "degraded": []})
        checks["broker"] = False
        status, body = get(f"{base}/readyz")
        assert status == 503 and body["ready"] is False and body["checks"]["broker"] is False
        assert body["degraded"] == []
        assert get(f"{base}/healthz") == (200, {"status": "alive"})
    finally:
        server.shutdown()
        server.server_close()
