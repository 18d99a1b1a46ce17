"""Helpers for the observability tests: the services' JSON log lines and /metrics samples."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.live import Live

SERVICES = ("ingest", "links", "review", "rooms", "scanner")
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def new_request_id(kind: str = "obs") -> str:
    return f"{kind}-{uuid.uuid4().hex[:16]}"


def log_lines(live: Live, key: str) -> list[dict[str, Any]]:
    """The JSON lines of one process's log (var/logs/<key>.log); other lines are skipped."""
    path = live.stack.var_dir / "logs" / f"{key}.log"
    return json_lines(path.read_text(errors="replace"))


def json_lines(text: str) -> list[dict[str, Any]]:
    """The lines of ``text`` that are JSON objects, parsed; other lines are skipped."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def wait_for_line(
    live: Live, key: str, match: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in log_lines(live, key) if match(line)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            tail = "\n".join(json.dumps(x) for x in log_lines(live, key)[-30:])
            raise AssertionError(f"no matching line in {key}.log within {timeout} s\n{tail}")
        time.sleep(0.3)


def samples(client: httpx.Client, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` on the client's /metrics: (labels, value)."""
    out = []
    for line in client.get("/metrics").text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group("name") == name:
            labels = dict(_LABEL.findall(m.group("labels") or ""))
            out.append((labels, float(m.group("value"))))
    return out


def value(client: httpx.Client, name: str, **labels: str) -> float | None:
    for found, number in samples(client, name):
        if all(found.get(k) == v for k, v in labels.items()):
            return number
    return None


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.3)


def backlog_in_db(live: Live) -> tuple[int, int, float]:
    """(pending, unannounced, oldest pending age in s) as MongoDB has them now. Other tests in
    the session leave images pending on purpose (statuses set by hand, documents written
    directly), so the gauges are compared with the database, not with zero."""
    pending = {"status": "pending"}
    oldest = live.db.images.find_one(pending, sort=[("created_at", 1)])
    age = 0.0
    if oldest is not None:
        created = oldest["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - created).total_seconds())
    return (
        live.db.images.count_documents(pending),
        live.db.images.count_documents({**pending, "publish.published_at": None}),
        age,
    )


def backlog_gauges_match_db(live: Live, slack_s: float = 8.0) -> bool:
    """The ingest gauges agree with the database (the age within one refresh plus slack)."""
    pending, unannounced, age = backlog_in_db(live)
    gauged_age = value(live.ingest, "chatpic_ingest_oldest_pending_age_seconds")
    return (
        value(live.ingest, "chatpic_ingest_pending_images") == pending
        and value(live.ingest, "chatpic_ingest_outbox_unpublished") == unannounced
        and gauged_age is not None
        and abs(gauged_age - age) <= slack_s
    )
