"""Scale out and crash: two scanner processes share the uploads as one consumer group; one is
killed with SIGKILL while work is in flight; every upload still gets exactly one verdict."""

from __future__ import annotations

import signal
import time

import httpx

from deploy.local.stack import StackPorts, http_ok
from tests.live import Live
from tests.unit.corpus import corpus_path

PHOTOS = ["Landscape_0.jpg", "Landscape_3.jpg", "DSCN0021.jpg", "hopper.webp", "Canon_40D.jpg"]


def scanned_total(url: str) -> float:
    total = 0.0
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith("chatpic_scanner_images_total{"):
            total += float(line.split()[-1])
    return total


def metric(url: str, series: str) -> float:
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def upload_batch(live: Live, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = live.upload(corpus_path(PHOTOS[i % len(PHOTOS)]).read_bytes())
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["image_id"])
    return ids


def test_two_scanners_share_the_work_and_survive_a_kill(live: Live) -> None:
    port = StackPorts.free().scanner
    key = live.stack.start_service("scanner", index=1, metrics_port=port)
    second = f"http://127.0.0.1:{port}"
    first = str(live.scanner.base_url).rstrip("/")
    deadline = time.monotonic() + 60
    while not http_ok(f"{second}/readyz") and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(4)  # the group rebalances: both members get partitions

    before = {u: scanned_total(f"{u}/metrics") for u in (first, second)}
    ids = upload_batch(live, 16)
    for image_id in ids:
        assert live.wait_status(image_id, timeout=60) in ("cleared", "review", "blocked")
    moved = {u: scanned_total(f"{u}/metrics") - before[u] for u in (first, second)}
    assert sum(moved.values()) >= 16  # (plus any re-announced leftovers of earlier tests)
    assert all(v > 0 for v in moved.values()), f"one scanner did all the work: {moved}"

    # A new bank entry is enforced by every scanner within seconds, even while idle.
    enforced = "chatpic_scanner_bank_change_enforced_seconds_count"
    before_bank = {u: metric(f"{u}/metrics", enforced) for u in (first, second)}
    added = live.review.post(
        "/api/v1/banks/group-test/entries",
        json={"hash": "0123456789abcdef", "reason": "propagation check"},
    )
    assert added.status_code == 201
    start = time.monotonic()
    while time.monotonic() - start < 5 and any(
        metric(f"{u}/metrics", enforced) <= before_bank[u] for u in (first, second)
    ):
        time.sleep(0.1)
    assert all(metric(f"{u}/metrics", enforced) > before_bank[u] for u in (first, second))
    pushes = "chatpic_scanner_bank_change_events_total"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        metric(f"{u}/metrics", pushes) == 0 for u in (first, second)
    ):
        time.sleep(0.1)
    assert all(metric(f"{u}/metrics", pushes) > 0 for u in (first, second))  # via bank.changed

    # SIGKILL the second scanner with records in flight: nothing committed for them, the
    # survivor takes over its partitions and the verdict write stays single.
    ids = upload_batch(live, 10)
    live.stack.procs[key].send_signal(signal.SIGKILL)
    live.stack.procs[key].wait(10)
    live.stack.procs.pop(key)
    for image_id in ids:
        assert live.wait_status(image_id, timeout=90) in ("cleared", "review", "blocked")
    for doc in live.db.images.find({"_id": {"$in": ids}}):
        assert doc["verdict"]["model"]["version"] and doc["scanned_at"]
    assert live.scanner.get("/readyz").status_code == 200
