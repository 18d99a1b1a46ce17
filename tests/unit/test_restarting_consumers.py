"""The restarting-consumer thread helper: a consumer that fails is replaced, the thread lives on."""

from __future__ import annotations

import logging
import threading

import pytest

from services.shared.kafka import start_restarting


def test_a_failing_body_runs_again_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    calls: list[int] = []
    failures: list[Exception] = []

    def body() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"broker gone ({len(calls)})")
        stop.set()

    with caplog.at_level(logging.WARNING, logger="services.shared.kafka"):
        thread = start_restarting(
            "test-consumer", body, stop, on_failure=failures.append, pause_s=0
        )
        thread.join(5)
    assert not thread.is_alive()
    assert len(calls) == 3
    assert [str(e) for e in failures] == ["broker gone (1)", "broker gone (2)"]
    lines = [r for r in caplog.records if r.getMessage() == "consumer restarting"]
    assert [getattr(r, "consumer", None) for r in lines] == ["test-consumer"] * 2
