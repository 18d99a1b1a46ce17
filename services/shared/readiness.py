"""Dependency checks for /readyz and ``chatpic_dependency_up``.

Every process checks its dependencies (database, broker, model...) in one daemon thread every
``CHATPIC_DEPENDENCY_CHECK_INTERVAL_S`` seconds, so the gauge stays true between scrapes even
when nobody asks /readyz. /readyz re-checks the bounded checks (the database ping gives up
after about a second) and reads the broker's cached answer: a broker that hangs never makes
/readyz slow.

The broker check is a Kafka ApiVersions round trip (the first request every client sends) to
a bootstrap server, with a short timeout: it proves the broker process answers the protocol,
not just that a port is open.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from services.shared.opsmetrics import DEPENDENCY_UP

log = logging.getLogger(__name__)

_API_VERSIONS_KEY = 18
_CORRELATION_ID = 0x0C4A7
_CLIENT_ID = b"chatpic-probe"
_API_VERSIONS_V0 = (
    struct.pack(">hhih", _API_VERSIONS_KEY, 0, _CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID
)
_REQUEST = struct.pack(">i", len(_API_VERSIONS_V0)) + _API_VERSIONS_V0


def bootstrap_servers(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port,[v6::addr]:port`` → [(host, port)]; entries without a port get 9092."""
    out = []
    for entry in bootstrap.split(","):
        entry = entry.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or "]" in port:
            host, port = entry, "9092"
        out.append((host.strip("[]"), int(port)))
    return out


def _read(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("broker answer too slow")
        sock.settimeout(left)
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def broker_answers(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True if one bootstrap server answers an ApiVersions request within ``timeout_s``."""
    for host, port in bootstrap_servers(bootstrap):
        deadline = time.monotonic() + timeout_s
        try:
            with socket.create_connection((host, port), timeout=timeout_s) as sock:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                sock.sendall(_REQUEST)
                (size,) = struct.unpack(">i", _read(sock, 4, deadline))
                if size < 6:
                    continue
                correlation, error = struct.unpack(">ih", _read(sock, 6, deadline))
        except (OSError, struct.error):
            continue
        if correlation == _CORRELATION_ID and error == 0:
            return True
    return False


class BrokerProbe:
    """``broker_answers`` bound to the settings' bootstrap servers."""

    def __init__(self, bootstrap: str, timeout_s: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s

    def __call__(self) -> bool:
        return broker_answers(self.bootstrap, self.timeout_s)


class Dependencies:
    """Named checks, run together every ``interval_s`` in a daemon thread (first round at
    ``start``); each result sets ``chatpic_dependency_up{service,dependency}``. ``check`` runs
    one now; ``last`` is the cached result, False once older than three intervals (a stuck
    check thread must not keep an old 'up')."""

    def __init__(
        self,
        service: str,
        checks: Mapping[str, Callable[[], bool]],
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.checks = dict(checks)
        self.interval_s = interval_s
        self.clock = clock
        self._results: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, name: str) -> bool:
        try:
            ok = bool(self.checks[name]())
        except Exception as exc:  # a check that raises is a dependency that is not there
            log.debug("dependency check raised", extra={"dependency": name, "err": repr(exc)})
            ok = False
        with self._lock:
            self._results[name] = (ok, self.clock())
        DEPENDENCY_UP.labels(self.service, name).set(1 if ok else 0)
        return ok

    def last(self, name: str) -> bool:
        with self._lock:
            ok, at = self._results.get(name, (False, float("-inf")))
        return ok and self.clock() - at <= 3 * self.interval_s + 2

    def check_all(self) -> dict[str, bool]:
        return {name: self.check(name) for name in self.checks}

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dependency-checks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.check_all()
            if self._stop.wait(self.interval_s):
                return

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def readiness(checks: Mapping[str, bool], required: Collection[str]) -> dict[str, Any]:
    """The /readyz body: ready when every ``required`` check passes; failing checks that are
    not required are listed as ``degraded`` (the service still answers, with less)."""
    ready = all(checks.get(name, False) for name in required)
    degraded = sorted(name for name, ok in checks.items() if not ok and name not in required)
    return {"ready": ready, "checks": dict(checks), "degraded": degraded}
