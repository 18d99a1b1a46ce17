"""The live stack fixture: one real broker, database and set of services per test session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from deploy.local.stack import Stack, StackPorts


@dataclass
class Live:
    stack: Stack
    ingest: httpx.Client
    links: httpx.Client
    review: httpx.Client
    scanner: httpx.Client
    mongo: MongoClient[dict[str, Any]]

    @property
    def db(self) -> Any:
        return self.mongo["chatpic"]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.stack.ports.broker}"

    def upload(self, data: bytes, name: str = "photo.jpg") -> httpx.Response:
        return self.ingest.post("/api/v1/images", files={"file": (name, data)})

    def wait_status(self, image_id: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        status = "pending"
        while time.monotonic() < deadline:
            status = self.ingest.get(f"/api/v1/images/{image_id}").json()["status"]
            if status != "pending":
                return str(status)
            time.sleep(0.2)
        raise AssertionError(f"image {image_id} still {status} after {timeout} s")

    def view(self, token: str, **reveal: Any) -> httpx.Response:
        """Reveal a link as an API client and fetch the image with the ticket: the image
        response, or the reveal's refusal if there was no ticket."""
        granted = self.links.post(f"/s/{token}/reveal", **reveal)
        if granted.status_code != 200:
            return granted
        return self.links.get(granted.json()["image_url"])

    def full_logs(self) -> str:
        paths = sorted((self.stack.var_dir / "logs").glob("*.log"))
        return "\n".join(p.read_text(errors="replace") for p in paths)

    def logs(self) -> str:
        out = []
        for path in sorted((self.stack.var_dir / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    var_dir: Path = tmp_path_factory.mktemp("chatpic-var")
    # Many uploads come from 127.0.0.1 in one session; the rate limit has its own test.
    stack = Stack(
        var_dir=var_dir,
        ports=StackPorts.free(),
        extra_env={
            "CHATPIC_UPLOAD_RATE_LIMIT": "100000",
            "CHATPIC_MIN_EXPIRES_IN_S": "1",
            # End-of-session links die 3 s after the uploader's page stops (1 s heartbeats),
            # and the sweeper looks every second, so lifecycle tests finish quickly.
            "CHATPIC_SESSION_GRACE_S": "3",
            "CHATPIC_SESSION_HEARTBEAT_S": "1",
            "CHATPIC_SWEEP_INTERVAL_S": "1",
            "CHATPIC_TICKET_FETCH_GRACE_S": "1",
        },
    )
    stack.start()
    p = stack.ports
    clients = {
        name: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        for name, port in (
            ("ingest", p.ingest),
            ("links", p.links),
            ("review", p.review),
            ("scanner", p.scanner),
        )
    }
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://127.0.0.1:{p.mongo}/", retryWrites=False, tz_aware=True
    )
    live = Live(stack=stack, mongo=mongo, **clients)
    try:
        yield live
    finally:
        dead = stack.dead()
        for c in clients.values():
            c.close()
        mongo.close()
        stack.stop()
        assert not dead, f"services died during the run: {dead}\n{live.logs()}"
