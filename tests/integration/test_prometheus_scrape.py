"""The real Prometheus, started by the same code as `make run`, scrapes the test stack: an
upload shows up in the scanner's counters as Prometheus sees them, every target is up and the
alert rules are loaded and evaluate without errors."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from deploy.local.stack import RULES_DIR, find_prometheus
from tests.integration.links_helpers import unique_photo
from tests.live import Live

PROMETHEUS = find_prometheus(os.environ)
REQUIRED = os.environ.get("CHATPIC_REQUIRE_PROMETHEUS") == "1" or bool(os.environ.get("CI"))
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not REQUIRED,
    reason="Prometheus is not installed: `make prometheus` (Debian's package) or set "
    "CHATPIC_PROMETHEUS_BIN; CHATPIC_REQUIRE_PROMETHEUS=1 makes this a failure",
)
SCRAPE_INTERVAL_S = 1.0


def alert_names() -> set[str]:
    doc = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"]}


@pytest.fixture
def prometheus(live: Live) -> Iterator[httpx.Client]:
    assert PROMETHEUS is not None, "Prometheus is required (CHATPIC_REQUIRE_PROMETHEUS) but missing"
    url = live.stack.start_prometheus(PROMETHEUS, scrape_interval_s=SCRAPE_INTERVAL_S)
    proc = live.stack.procs["prometheus"]
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client
    finally:
        live.stack.stop_process("prometheus")
        assert proc.poll() is not None, "Prometheus outlived stop_process"


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s; last: {last!r}")


def query(prom: httpx.Client, expr: str) -> float:
    """The single value of an instant query (NaN-free: callers add `or vector(0)`)."""
    body = prom.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def targets(prom: httpx.Client) -> list[dict[str, Any]]:
    body = prom.get("/api/v1/targets", params={"state": "active"}).json()
    return list(body["data"]["activeTargets"])


def test_prometheus_scrapes_the_stack_and_sees_an_upload_scanned(
    live: Live, prometheus: httpx.Client
) -> None:
    stack = live.stack
    expected = {
        ("ingest", f"127.0.0.1:{stack.ports.ingest}"),
        ("links", f"127.0.0.1:{stack.ports.links}"),
        ("review", f"127.0.0.1:{stack.ports.review}"),
        ("rooms", f"127.0.0.1:{stack.ports.rooms}"),
    } | {("scanner", target) for target in stack.scrape_targets()["scanner"]}
    assert len(expected) >= 5

    def all_up() -> bool:
        found = targets(prometheus)
        return {(t["labels"]["job"], t["labels"]["instance"]) for t in found} == expected and all(
            t["health"] == "up" for t in found
        )

    wait_until("every target scraped and up", all_up)
    assert query(prometheus, "count(up == 1)") == len(expected)

    # Counters as Prometheus has them now (earlier tests may have scanned images already).
    images = "sum(chatpic_scanner_images_total) or vector(0)"
    scans = 'sum(chatpic_scanner_scan_seconds_count{stage="total"}) or vector(0)'
    before_images, before_scans = query(prometheus, images), query(prometheus, scans)

    resp = live.upload(unique_photo(random.randrange(1 << 30)), "prometheus.jpg")
    assert resp.status_code == 202, resp.text
    assert live.wait_status(resp.json()["image_id"], timeout=30) != "pending"

    wait_until(
        "Prometheus to see the scan",
        lambda: (
            query(prometheus, images) >= before_images + 1
            and query(prometheus, scans) >= before_scans + 1
        ),
    )

    # The production rule files are loaded: every alert, evaluated without errors.
    def rules() -> list[dict[str, Any]]:
        body = prometheus.get("/api/v1/rules").json()
        assert body["status"] == "success", body
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    loaded = rules()
    names = {r["name"] for r in loaded if r["type"] == "alerting"}
    assert names == alert_names()
    assert {
        "ChatPicOldestPendingImage",
        "ChatPicConsumerLagGrowing",
        "ChatPicDeadLetters",
        "ChatPicHigh5xxRatio",
        "ChatPicScannerDown",
        "ChatPicBankEnforcementSlow",
        "ChatPicReviewQueueOverSLA",
        "ChatPicDependencyDown",
    } <= names
    evaluated = wait_until(
        "every rule evaluated",
        lambda: (lambda rs: rs if all(r["health"] != "unknown" for r in rs) else None)(rules()),
    )
    errors = {r["name"]: r.get("lastError") for r in evaluated if r["health"] != "ok"}
    assert errors == {}
    states = {r["name"]: r["state"] for r in evaluated if r["type"] == "alerting"}
    assert states["ChatPicScannerDown"] == "inactive"
    assert states["ChatPicServiceDown"] == "inactive"
