"""A scanner SIGKILLed mid-scan (issue #9, C22): the record comes back to the surviving group
member and the image ends with exactly one verdict; nothing is served before it.

To catch a scanner mid-scan without hooks in production code, a second scanner process talks
to the database through a proxy (faults_helpers.MongoTrap) that holds one chosen command for
one of our uploads: either the verdict write itself (scanned, nothing stored, offset not
committed) or the read that follows it (verdict stored, offset not committed). Uploads go on
until one lands on the second scanner's partitions and is caught; then it is SIGKILLed and the
stack's own scanner must finish the job."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.faults_helpers import (
    MongoTrap,
    assert_one_verdict_each,
    assert_served_only_if_cleared,
    kill_scanner,
    metric_total,
    start_scanner,
    upload_photo,
    verdicts_logged,
    wait_final,
)
from tests.integration.observability_helpers import eventually, wait_for_line
from tests.live import Live

DUPLICATES = "chatpic_scanner_duplicates_total"


def catch_mid_scan(
    live: Live, stage: str, index: int, seed: int
) -> tuple[str, str, list[tuple[str, str]], dict[str, Any]]:
    """Start scanner ``index`` behind a trap, upload until it is caught at ``stage`` on one of
    our images, note that image's document, SIGKILL the scanner. Returns (the caught image,
    the killed process's key, every upload, the document as it was when caught)."""
    trap = MongoTrap(live.stack.ports.mongo, stage)
    key = ""
    uploads: list[tuple[str, str]] = []
    try:
        key = start_scanner(live, index, trap.uri)
        deadline = time.monotonic() + 60
        while not trap.caught.is_set():
            assert time.monotonic() < deadline, f"none of {len(uploads)} uploads reached {key}"
            image_id, token = upload_photo(live, seed + len(uploads))
            trap.watch(image_id)
            uploads.append((image_id, token))
            # Until the trapped scanner holds it, or the stack's scanner decided it.
            until = time.monotonic() + 20
            while not trap.caught.wait(0.1) and time.monotonic() < until:
                if live.db.images.find_one({"_id": image_id})["status"] != "pending":
                    break
        held = trap.image_id
        doc = live.db.images.find_one({"_id": held})
        token = dict(uploads)[held]
        if stage == "write":
            # Scanned, not stored: still pending, so no link can be made for it.
            assert doc["status"] == "pending" and "verdict" not in doc
            refused = live.links.post(
                "/api/v1/links", json={"image_id": held, "owner_token": token}
            )
            assert refused.status_code == 409 and refused.json()["code"] == "not_scanned_yet"
        else:
            assert doc["status"] in ("cleared", "review", "blocked") and doc["verdict"]
        kill_scanner(live, key)
    finally:
        if key:
            kill_scanner(live, key)  # the stack is back to its own single scanner
        trap.close()
    return held, key, uploads, doc


def test_scanner_killed_before_storing_its_verdict(live: Live) -> None:
    held, killed, uploads, _ = catch_mid_scan(live, "write", index=2, seed=931_000)
    killed_at = time.monotonic()
    took = wait_final(live, [held], timeout=60)
    statuses = assert_one_verdict_each(live, [i for i, _ in uploads])
    logged = verdicts_logged(live, [held])[held]
    assert logged == {"scanner": 1}, logged  # decided by the survivor, not by the killed one
    doc = live.db.images.find_one({"_id": held})
    # Redelivered by the broker: ingest did not have to announce it again.
    assert doc["publish"]["attempts"] == 1, doc["publish"]
    assert assert_served_only_if_cleared(live, uploads) == list(statuses.values()).count("cleared")
    assert live.scanner.get("/readyz").status_code == 200
    assert killed not in live.stack.procs
    print(
        f"redelivered and decided {took:.1f} s after the kill ({time.monotonic() - killed_at:.1f})"
    )


def test_scanner_killed_after_storing_its_verdict(live: Live) -> None:
    duplicates = metric_total(live.scanner, DUPLICATES)
    held, killed, uploads, caught = catch_mid_scan(live, "after", index=3, seed=932_000)
    killed_at = time.monotonic()
    # The record was never committed: it comes back to the survivor, which finds the verdict
    # already stored, counts a duplicate and only announces it (the killed one never did).
    eventually(lambda: metric_total(live.scanner, DUPLICATES) > duplicates, 60, "redelivered")
    took = time.monotonic() - killed_at
    wait_for_line(
        live,
        "rooms",
        lambda x: x.get("msg") == "image.scanned handled" and x.get("image_id") == held,
        timeout=30,
    )
    statuses = assert_one_verdict_each(live, [i for i, _ in uploads])
    assert verdicts_logged(live, [held])[held] == {killed: 1}  # stored once, by the killed one
    doc = live.db.images.find_one({"_id": held})
    assert doc["scanned_at"] == caught["scanned_at"] and doc["verdict"] == caught["verdict"]
    assert doc["publish"]["attempts"] == 1, doc["publish"]
    assert assert_served_only_if_cleared(live, uploads) == list(statuses.values()).count("cleared")
    assert live.scanner.get("/readyz").status_code == 200
    print(f"redelivered as a duplicate {took:.1f} s after the kill")
