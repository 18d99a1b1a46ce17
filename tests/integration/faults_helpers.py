"""Helpers for the fault tests (tests/integration/test_z_faults_*.py): a background uploader,
verdict and bytes-served counts, 5xx bookkeeping, extra scanner processes, and a database
proxy that holds one chosen command so a scanner can be caught mid-scan."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bson
import httpx
from bson.errors import BSONError
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.stack import StackPorts, http_ok
from services.shared.metrics import QUIET_ROUTES
from tests.integration.links_helpers import unique_photo
from tests.integration.observability_helpers import eventually, json_lines, log_lines
from tests.live import Live

FINAL = ("cleared", "review", "blocked")
HTTP_SERVICES = ("ingest", "links", "review", "rooms")


# ---- uploads ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    image_id: str
    owner_token: str
    phase: str
    seconds: float  # how long the upload request took
    link_status: int  # link creation tried right after the upload: 409 while pending
    link_code: str


@dataclass
class UploadStream:
    """Uploads unique photos one after another on its own thread, tagging each with the phase
    the test is in. Right after each upload it asks for a link with the right owner key: that
    must be refused (``not_scanned_yet``) unless the image already has a ``cleared`` verdict."""

    live: Live
    seed: int
    pause_s: float = 0.1
    phase: str = "before"
    accepted: list[Upload] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> UploadStream:
        self._thread = threading.Thread(target=self._run, name="upload-stream", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the upload thread did not stop"

    def _run(self) -> None:
        ingest = httpx.Client(base_url=str(self.live.ingest.base_url), timeout=30)
        links = httpx.Client(base_url=str(self.live.links.base_url), timeout=30)
        n = 0
        with ingest, links:
            while not self._stop.is_set():
                phase = self.phase
                n += 1
                try:
                    self._one(ingest, links, phase, n)
                except Exception as exc:  # the test fails on any refusal or transport error
                    self.refused.append(f"{phase}: {type(exc).__name__}: {exc}")
                self._stop.wait(self.pause_s)

    def _one(self, ingest: httpx.Client, links: httpx.Client, phase: str, n: int) -> None:
        data = unique_photo(self.seed + n)
        start = time.monotonic()
        resp = ingest.post("/api/v1/images", files={"file": ("photo.jpg", data)})
        took = time.monotonic() - start
        if resp.status_code != 202:
            self.refused.append(f"{phase}: {resp.status_code} {resp.text[:200]}")
            return
        body = resp.json()
        link = links.post(
            "/api/v1/links",
            json={"image_id": body["image_id"], "owner_token": body["owner_token"]},
        )
        code = str(link.json().get("code", "")) if link.status_code != 201 else ""
        self.accepted.append(
            Upload(body["image_id"], body["owner_token"], phase, took, link.status_code, code)
        )

    def count(self, phase: str) -> int:
        return sum(1 for u in self.accepted if u.phase == phase)

    def wait_for(self, phase: str, n: int, timeout: float = 60) -> None:
        eventually(lambda: self.count(phase) >= n or bool(self.refused), timeout, f"{n} {phase}")
        assert not self.refused, self.refused


def upload_photo(live: Live, seed: int) -> tuple[str, str]:
    resp = live.upload(unique_photo(seed))
    assert resp.status_code == 202, resp.text
    return str(resp.json()["image_id"]), str(resp.json()["owner_token"])


def wait_final(live: Live, ids: list[str], timeout: float) -> float:
    """Wait until every image has a verdict; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    left = set(ids)
    while left:
        decided = live.db.images.find(
            {"_id": {"$in": list(left)}, "status": {"$in": list(FINAL)}}, {"_id": 1}
        )
        left -= {d["_id"] for d in decided}
        if not left:
            break
        if time.monotonic() > deadline:
            stuck = list(live.db.images.find({"_id": {"$in": list(left)}}, {"blob_id": 0}))
            raise AssertionError(
                f"{len(left)} of {len(ids)} images without a verdict after {timeout} s: "
                f"{stuck}\n{live.scanner_diagnosis()}"
            )
        time.sleep(0.3)
    return time.monotonic() - start


# ---- verdicts and bytes served -----------------------------------------------------------
def scanner_keys(live: Live) -> list[str]:
    return sorted(p.stem for p in (live.stack.var_dir / "logs").glob("scanner*.log"))


def verdicts_logged(live: Live, ids: list[str]) -> dict[str, Counter[str]]:
    """Image id -> {scanner process: "verdict stored" lines} over every scanner's log."""
    wanted = set(ids)
    out: dict[str, Counter[str]] = {i: Counter() for i in ids}
    for key in scanner_keys(live):
        for line in log_lines(live, key):
            if line.get("msg") == "verdict stored" and line.get("image_id") in wanted:
                out[line["image_id"]][key] += 1
    return out


def assert_one_verdict_each(live: Live, ids: list[str]) -> dict[str, str]:
    """Accepted = verdicts: every image has exactly one stored verdict (its document, and one
    "verdict stored" line in all the scanners' logs together). Returns id -> status."""
    docs = {d["_id"]: d for d in live.db.images.find({"_id": {"$in": ids}})}
    assert set(docs) == set(ids), "an accepted image has no document"
    for image_id, doc in docs.items():
        assert doc["status"] in FINAL, (image_id, doc["status"])
        assert doc.get("verdict") and doc.get("scanned_at"), (image_id, doc)
    logged = verdicts_logged(live, ids)
    twice = {i: dict(c) for i, c in logged.items() if sum(c.values()) != 1}
    assert not twice, f"images without exactly one stored verdict: {twice}"
    return {i: str(d["status"]) for i, d in docs.items()}


def served_bytes(live: Live, image_id: str, owner_token: str) -> bytes | None:
    """Ask for a link and reveal it as a viewer: the image bytes, or None if refused."""
    link = live.links.post("/api/v1/links", json={"image_id": image_id, "owner_token": owner_token})
    if link.status_code != 201:
        assert link.status_code in (403, 409, 451), link.text  # a refusal, never a 5xx
        return None
    shown = live.view(link.json()["token"])
    if shown.status_code != 200:
        return None
    assert shown.headers["content-type"].startswith("image/")
    return shown.content


def assert_served_only_if_cleared(live: Live, images: list[tuple[str, str]]) -> int:
    """Bytes come back for exactly the cleared images; returns how many were served."""
    statuses = {
        d["_id"]: d["status"]
        for d in live.db.images.find({"_id": {"$in": [i for i, _ in images]}}, {"status": 1})
    }
    served = {i for i, token in images if served_bytes(live, i, token)}
    cleared = {i for i, s in statuses.items() if s == "cleared"}
    assert served == cleared, {
        "served, not cleared": served - cleared,
        "not served": cleared - served,
    }
    return len(served)


def all_samples(client: httpx.Client, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named ``name`` on the client's /metrics, parsed by prometheus_client (route
    labels such as ``/api/v1/images/{image_id}`` hold braces, which simple patterns miss)."""
    out = []
    for family in text_string_to_metric_families(client.get("/metrics").text):
        out += [(dict(s.labels), float(s.value)) for s in family.samples if s.name == name]
    return out


def metric_total(client: httpx.Client, name: str, **labels: str) -> float:
    return sum(
        v
        for found, v in all_samples(client, name)
        if all(found.get(k) == x for k, x in labels.items())
    )


def bytes_served(live: Live) -> tuple[float, float]:
    """Image bytes handed out so far: links' byte counter and rooms' served images."""
    return (
        metric_total(live.links, "chatpic_links_bytes_served_total"),
        metric_total(live.rooms, "chatpic_rooms_images_served_total", outcome="served"),
    )


# ---- 5xx bookkeeping ---------------------------------------------------------------------
def five_xx(client: httpx.Client) -> float:
    """chatpic_http_requests_total{status="5xx"} over the public routes (not /readyz etc.)."""
    return sum(
        v
        for labels, v in all_samples(client, "chatpic_http_requests_total")
        if labels.get("status") == "5xx" and labels.get("route") not in QUIET_ROUTES
    )


@dataclass
class LogMark:
    """Where each service's log ended when the mark was made; ``since`` reads what came after."""

    live: Live
    sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in (self.live.stack.var_dir / "logs").glob("*.log"):
            self.sizes[path.stem] = path.stat().st_size

    def since(self, key: str) -> list[dict[str, Any]]:
        path = self.live.stack.var_dir / "logs" / f"{key}.log"
        with path.open("rb") as f:
            f.seek(self.sizes.get(key, 0))
            text = f.read().decode(errors="replace")
        return json_lines(text)

    def server_errors(self, key: str) -> list[dict[str, Any]]:
        """Access lines with a 5xx other than 503, and "unhandled error" lines, since the mark."""
        return [
            x
            for x in self.since(key)
            if x.get("msg") == "unhandled error"
            or (int(x.get("status_code") or 0) >= 500 and x.get("status_code") != 503)
        ]


# ---- scanner processes -----------------------------------------------------------------
def start_scanner(live: Live, index: int, mongo_uri: str | None = None) -> str:
    """Start scanner process ``index`` (optionally on another database address) and wait
    until it is ready. The caller must stop it (``kill_scanner``)."""
    port = StackPorts.free().scanner
    env = live.stack.extra_env
    saved = env.get("CHATPIC_MONGO_URI")
    if mongo_uri is not None:
        env["CHATPIC_MONGO_URI"] = mongo_uri
    try:
        key = live.stack.start_service("scanner", index=index, metrics_port=port)
    finally:
        if saved is None:
            env.pop("CHATPIC_MONGO_URI", None)
        else:
            env["CHATPIC_MONGO_URI"] = saved
    proc = live.stack.procs[key]
    url = f"http://127.0.0.1:{port}/readyz"
    eventually(lambda: proc.poll() is None and http_ok(url), 90, f"{key} ready")
    return key


def kill_scanner(live: Live, key: str) -> None:
    """SIGKILL one scanner process we started and forget it (the stack's count is restored)."""
    proc = live.stack.procs.pop(key, None)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def scanner_metrics_url(live: Live, key: str) -> str:
    index = int(key.split("-")[1]) if "-" in key else 0
    return f"http://127.0.0.1:{live.stack.scanner_ports[index]}"


# ---- a database proxy that catches one command -----------------------------------------
OP_MSG = 2013
Command = dict[str, Any]


def op_msg_command(msg: bytes) -> Command | None:
    """The command document of one MongoDB OP_MSG (document sequences, e.g. ``updates``,
    folded in as lists); None for other messages or anything unreadable."""
    try:
        if int.from_bytes(msg[12:16], "little") != OP_MSG:
            return None
        flags = int.from_bytes(msg[16:20], "little")
        end = len(msg) - (4 if flags & 1 else 0)
        pos, cmd = 20, {}
        while pos < end:
            kind, pos = msg[pos], pos + 1
            size = int.from_bytes(msg[pos : pos + 4], "little")
            if kind == 0:
                cmd.update(bson.decode(msg[pos : pos + size]))
            elif kind == 1:
                nul = msg.index(b"\0", pos + 4)
                name, at, docs = msg[pos + 4 : nul].decode(), nul + 1, []
                while at < pos + size:
                    n = int.from_bytes(msg[at : at + 4], "little")
                    docs.append(bson.decode(msg[at : at + n]))
                    at += n
                cmd[name] = docs
            else:
                return None
            pos += size
        return cmd
    except (ValueError, IndexError, BSONError):
        return None


def verdict_write(cmd: Command) -> str | None:
    """The image id if ``cmd`` is the scanner's verdict write (pending -> verdict)."""
    if cmd.get("update") != "images":
        return None
    for update in cmd.get("updates", []):
        change = update.get("u", {}).get("$set", {})
        if "verdict" in change and update.get("q", {}).get("status") == "pending":
            return str(update["q"]["_id"])
    return None


def image_read(cmd: Command) -> str | None:
    if cmd.get("find") == "images" and isinstance(cmd.get("filter", {}).get("_id"), str):
        return str(cmd["filter"]["_id"])
    return None


@dataclass
class MongoTrap:
    """A TCP proxy to the database for one process. It forwards everything, except that it
    holds the first command ``stage`` picks for a watched image (and everything after it on
    that connection): ``"write"`` holds the verdict write itself (the scan is done, nothing is
    stored); ``"after"`` lets the write through and holds the next read of that image (the
    verdict is stored, the offset not yet committed). ``caught`` is set with ``image_id``."""

    upstream: int
    stage: str
    watched: set[str] = field(default_factory=set)
    caught: threading.Event = field(default_factory=threading.Event)
    image_id: str = ""
    _written: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _socks: list[socket.socket] = field(default_factory=list)
    _listener: socket.socket = field(default_factory=socket.socket)

    def __post_init__(self) -> None:
        assert self.stage in ("write", "after")
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        # directConnection: the database calls itself a one-member replica set, and following
        # its member list would lead the client around the proxy.
        port = self._listener.getsockname()[1]
        return f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def watch(self, image_id: str) -> None:
        with self._lock:
            self.watched.add(image_id)

    def close(self) -> None:
        for s in [self._listener, *self._socks]:
            with contextlib.suppress(OSError):
                s.close()

    def _hold(self, cmd: Command | None) -> bool:
        if cmd is None:
            return False
        with self._lock:
            if self.caught.is_set():
                return False
            written = verdict_write(cmd)
            if written in self.watched:
                if self.stage == "write":
                    return self._catch(written)
                self._written.add(written)
            read = image_read(cmd)
            if self.stage == "after" and read in self._written:
                return self._catch(read)
        return False

    def _catch(self, image_id: str) -> bool:
        self.image_id = image_id
        self.caught.set()
        return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), 5)
            except OSError:
                client.close()
                continue
            self._socks += [client, server]
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()

    @staticmethod
    def _down(server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        buf = b""
        try:
            while data := client.recv(65536):
                buf += data
                while len(buf) >= 4 and len(buf) >= int.from_bytes(buf[:4], "little"):
                    size = int.from_bytes(buf[:4], "little")
                    msg, buf = buf[:size], buf[size:]
                    if self._hold(op_msg_command(msg)):
                        self._swallow(client)  # never forwarded: the process dies waiting
                        return
                    server.sendall(msg)
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    @staticmethod
    def _swallow(client: socket.socket) -> None:
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Like ``eventually``, returning the seconds it took."""
    start = time.monotonic()
    eventually(check, timeout, what)
    return time.monotonic() - start
