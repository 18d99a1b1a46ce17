"""The live stack fixture: one real broker, database and set of services per test session."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from deploy.local.stack import Stack, StackPorts

ADMIN_USERNAME = "admin"


@dataclass
class Live:
    stack: Stack
    ingest: httpx.Client
    links: httpx.Client
    review_anon: httpx.Client  # the review console without a session
    scanner: httpx.Client
    rooms: httpx.Client
    mongo: MongoClient[dict[str, Any]]
    admin_password: str
    review: httpx.Client = field(init=False)  # logged in as the first admin, CSRF header set
    _opened: list[httpx.Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.review = self.login(ADMIN_USERNAME, self.admin_password)

    @property
    def review_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.ports.review}"

    def login(self, username: str, password: str, **client_args: Any) -> httpx.Client:
        """A review client logged in as ``username``, sending its CSRF token on every call."""
        client = httpx.Client(base_url=self.review_url, timeout=30, **client_args)
        self._opened.append(client)
        client.get("/login")  # sets the login form's double-submit cookie
        form_token = client.cookies.get("review_login", "")
        resp = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": form_token}
        )
        assert resp.status_code == 200, resp.text
        client.headers["X-CSRF-Token"] = resp.json()["csrf_token"]
        return client

    def create_reviewer(
        self, username: str | None = None, role: str = "reviewer"
    ) -> tuple[httpx.Client, str]:
        """A new account made by the admin through the API: its logged-in client and password."""
        username = username or f"rev-{secrets.token_hex(4)}"
        resp = self.review.post("/api/v1/accounts", json={"username": username, "role": role})
        assert resp.status_code == 201, resp.text
        password = str(resp.json()["password"])
        return self.login(username, password), password

    def close(self) -> None:
        for client in self._opened:
            client.close()

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
        raise AssertionError(
            f"image {image_id} still {status} after {timeout} s\n{self.scanner_diagnosis()}"
        )

    def scanner_diagnosis(self) -> str:
        """What the scanners were doing: their thread stacks (SIGUSR1) and their recent log
        lines other than access and connection noise, for a failure report from CI."""
        keys = [k for k in self.stack.procs if k.startswith("scanner")]
        for key in keys:
            if self.stack.procs[key].poll() is None:
                self.stack.procs[key].send_signal(signal.SIGUSR1)
        time.sleep(1)
        out = [f"dead: {self.stack.dead()}"]
        for key in keys:
            lines = (self.stack.var_dir / "logs" / f"{key}.log").read_text(errors="replace")
            kept = [
                ln
                for ln in lines.splitlines()
                if "chatpic.access" not in ln and "ECONNREFUSED" not in ln and "No node" not in ln
            ]
            out.append(f"--- {key}\n" + "\n".join(kept[-80:]))
        return "\n".join(out)

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
    admin_password = secrets.token_urlsafe(18)
    # Many uploads come from 127.0.0.1 in one session; the rate limit has its own test.
    stack = Stack(
        var_dir=var_dir,
        ports=StackPorts.free(),
        extra_env={
            # The review console's first admin (live.review logs in as it); short lockouts.
            "CHATPIC_REVIEW_ADMIN_PASSWORD": admin_password,
            "CHATPIC_REVIEW_LOGIN_LOCKOUT_S": "2",
            "CHATPIC_UPLOAD_RATE_LIMIT": "100000",
            "CHATPIC_MIN_EXPIRES_IN_S": "1",
            # End-of-session links die 3 s after the uploader's page stops (1 s heartbeats),
            # and the sweeper looks every second, so lifecycle tests finish quickly.
            "CHATPIC_SESSION_GRACE_S": "3",
            "CHATPIC_SESSION_HEARTBEAT_S": "1",
            "CHATPIC_SWEEP_INTERVAL_S": "1",
            "CHATPIC_TICKET_FETCH_GRACE_S": "1",
            # Rooms: short lifetimes allowed, a sweeper every second, a budget that the whole
            # session's joins from 127.0.0.1 fit in (the rate-limit test uses other addresses).
            "CHATPIC_ROOMS_MIN_LIFETIME_S": "2",
            "CHATPIC_ROOMS_SWEEP_INTERVAL_S": "1",
            "CHATPIC_ROOMS_RATE_LIMIT": "3000",
        },
    )
    stack.start()
    p = stack.ports
    clients = {
        name: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        for name, port in (
            ("ingest", p.ingest),
            ("links", p.links),
            ("review_anon", p.review),
            ("scanner", p.scanner),
            ("rooms", p.rooms),
        )
    }
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://127.0.0.1:{p.mongo}/", retryWrites=False, tz_aware=True
    )
    try:
        live = Live(stack=stack, mongo=mongo, admin_password=admin_password, **clients)
    except BaseException:
        stack.stop()
        raise
    try:
        yield live
    finally:
        dead = stack.dead()
        live.close()
        for c in clients.values():
            c.close()
        mongo.close()
        stack.stop()
        assert not dead, f"services died during the run: {dead}\n{live.logs()}"
