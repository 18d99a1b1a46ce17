"""The security tests' end-to-end run: one visitor, from an address of its own and with proxy
headers that name other addresses, does everything a user can do (upload, link, heartbeat,
reveal, gallery, report, room, room image, room report, a failed console login); the admin
previews the reported image and reads a blocked one's evidence. The run keeps every secret it
was handed and every image response it got, for the checks in test_security.py."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from deploy.local.stack import ROOT, _die_with_parent, http_ok, terminate
from services.scanner.hashing import phash_hex
from services.scanner.imaging import load_normalized
from tests.integration.links_helpers import unique_photo
from tests.live import Live

# The visitor's own peer address (all of 127/8 is loopback): the stack trusts no proxy, so
# this is the client address every service sees, and a value only a client could give.
VISITOR = "127.83.47.211"
# Proxy headers naming addresses (RFC 5737 / RFC 3849 documentation ranges). The stack trusts
# no proxy, so they are ignored for identity; they must still never be stored or logged.
XFF_V4 = "203.0.113.77"
XFF_V6 = "2001:db8:1234:5678::99"
FORWARDED_FOR = "198.51.100.23"
REAL_IP = "198.51.100.24"
PROXY_HEADERS = {
    "X-Forwarded-For": f"{XFF_V4}, {XFF_V6}",
    "Forwarded": f'for={FORWARDED_FOR};proto=http, for="[{XFF_V6}]"',
    "X-Real-IP": REAL_IP,
}
LINK_PASSWORD = "journey passphrase 7f3a"
ROOM_SECRET = "journey tripcode secret 91c2"
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass
class Journey:
    image_id: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # what: the raw value handed out
    images: dict[str, httpx.Response] = field(default_factory=dict)  # route: the response
    room: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""
    report_id: str = ""
    blocked_id: str = ""  # the photo a hash bank blocked: its bytes are in the evidence vault


def visitor_client(base_url: str, source: str = VISITOR, **extra: Any) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        transport=httpx.HTTPTransport(local_address=source),
        headers=PROXY_HEADERS,
        timeout=30,
        **extra,
    )


def eventually(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def upload(ingest: httpx.Client, data: bytes, status: str = "cleared") -> dict[str, Any]:
    resp = ingest.post("/api/v1/images", files={"file": ("photo.jpg", data)})
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    url = f"/api/v1/images/{body['image_id']}"
    final = eventually(
        f"verdict of {body['image_id']}",
        lambda: (s := ingest.get(url).json()["status"]) != "pending" and s,
    )
    assert final == status, final
    return body


def recv(conn: ClientConnection, kind: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} frame within {timeout} s"
        frame: dict[str, Any] = json.loads(conn.recv(left))
        if frame.get("type") == kind:
            return frame


def room_visit(live: Live, j: Journey, rooms: httpx.Client, ingest: httpx.Client) -> None:
    """Create a room, join it over the WebSocket from the visitor's address, say something,
    post a photo (shown once scanned), fetch it and its thumbnail, report the message."""
    made = rooms.post("/api/v1/rooms", json={"name": "journey", "lifetime_s": 3600})
    assert made.status_code == 201, made.text
    j.room = made.json()
    j.secrets["room owner token"] = j.room["owner_token"]
    j.secrets["room join secret"] = ROOM_SECRET
    photo = upload(ingest, unique_photo(90902))
    j.secrets["room photo owner token"] = photo["owner_token"]
    sock = socket.create_connection(("127.0.0.1", live.stack.ports.rooms), 10, (VISITOR, 0))
    url = f"ws://127.0.0.1:{live.stack.ports.rooms}/api/v1/rooms/{j.room['slug']}/ws"
    with connect(url, sock=sock, open_timeout=10, additional_headers=PROXY_HEADERS) as conn:
        conn.send(json.dumps({"type": "join", "nickname": "journey", "secret": ROOM_SECRET}))
        assert json.loads(conn.recv(10))["type"] == "welcome"
        conn.send(json.dumps({"type": "message", "text": "hello from the journey"}))
        said = recv(conn, "message")
        image = {
            "type": "image",
            "image_id": photo["image_id"],
            "owner_token": photo["owner_token"],
        }
        conn.send(json.dumps(image))
        shown = recv(conn, "image")
    j.images["rooms image"] = rooms.get(shown["url"])
    j.images["rooms thumbnail"] = rooms.get(shown["thumb_url"])
    report = rooms.post(
        f"/api/v1/rooms/{j.room['slug']}/messages/{said['id']}/report",
        json={"reason": "harassment", "details": "journey"},
    )
    assert report.status_code == 201, report.text


def links_visit(live: Live, j: Journey, links: httpx.Client, owner: dict[str, Any]) -> None:
    """A password and end-of-session link (heartbeat, reveal, image), a gallery link (its
    thumbnail), and a report through the link's token."""
    base = {"image_id": owner["image_id"], "owner_token": owner["owner_token"]}
    made = links.post(
        "/api/v1/links",
        json={**base, "max_views": 5, "password": LINK_PASSWORD, "end_of_session": True},
    )
    assert made.status_code == 201, made.text
    link = made.json()
    j.secrets["link token"] = link["token"]
    j.secrets["link session key"] = link["session"]["key"]
    j.secrets["link password"] = LINK_PASSWORD
    beat = links.post(
        f"/api/v1/links/{link['link_id']}/heartbeat", json={"session_key": link["session"]["key"]}
    )
    assert beat.status_code == 200, beat.text
    granted = links.post(f"/s/{link['token']}/reveal", json={"password": LINK_PASSWORD})
    assert granted.status_code == 200, granted.text
    image_url = granted.json()["image_url"]
    j.secrets["view ticket"] = image_url.rstrip("/").split("/")[-2]
    j.images["links reveal image"] = links.get(image_url)
    public = links.post(
        "/api/v1/links", json={**base, "max_views": 5, "gallery_category": "nature"}
    )
    assert public.status_code == 201, public.text
    j.secrets["gallery link token"] = public.json()["token"]
    j.images["links gallery thumbnail"] = links.get(
        f"/gallery/thumbs/{public.json()['gallery']['public_id']}"
    )
    report = links.post(
        "/api/v1/reports",
        json={"reason": "spam", "details": "journey report", "link_token": link["token"]},
    )
    assert report.status_code == 201, report.text
    j.report_id = report.json()["report_id"]


def console_visit(live: Live, j: Journey, ingest: httpx.Client) -> None:
    """A failed login from the visitor's address; the admin previews the reported image and
    reads the evidence of a photo blocked by a hash bank."""
    with visitor_client(live.review_url) as console:
        console.get("/login")
        token = console.cookies.get("review_login", "")
        form = {"username": "journey-nobody", "password": "wrong", "csrf_token": token}
        assert console.post("/login", data=form).status_code == 401
    job = eventually(
        "the report's review job",
        lambda: live.db.review_jobs.find_one({"image_id": j.image_id, "kind": "reports"}),
        timeout=10,
    )
    j.job_id = str(job["_id"])
    j.images["review preview"] = live.review.get(f"/api/v1/jobs/{j.job_id}/image")
    banned = unique_photo(90903)
    entry = live.review.post(
        "/api/v1/banks/security-journey/entries",
        json={"hash": phash_hex(load_normalized(banned)), "reason": "security journey"},
    )
    assert entry.status_code == 201, entry.text
    blocked = upload(ingest, banned, status="blocked")
    j.secrets["blocked photo owner token"] = blocked["owner_token"]
    j.blocked_id = blocked["image_id"]
    eventually(
        "evidence of the blocked photo",
        lambda: (live.db.images.find_one({"_id": blocked["image_id"]}) or {}).get("evidence"),
        timeout=10,
    )
    j.images["review evidence"] = live.review.get(
        f"/api/v1/evidence/{blocked['image_id']}", params={"reason": "security header check"}
    )


def run_journey(live: Live) -> Journey:
    j = Journey()
    ports = live.stack.ports
    with (
        visitor_client(f"http://127.0.0.1:{ports.ingest}") as ingest,
        visitor_client(f"http://127.0.0.1:{ports.links}") as links,
        visitor_client(f"http://127.0.0.1:{ports.rooms}") as rooms,
    ):
        owner = upload(ingest, unique_photo(90901))
        j.image_id = owner["image_id"]
        j.secrets["owner token"] = owner["owner_token"]
        links_visit(live, j, links, owner)
        room_visit(live, j, rooms, ingest)
        console_visit(live, j, ingest)
    for name, resp in j.images.items():
        assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text[:200]}"
    return j


def image_type(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return MIME[str(img.format)]


# ---- a second ingest process that trusts 127.0.0.1 as its proxy ------------------------


@dataclass
class ProxiedIngest:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        terminate(self.proc)


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxied_ingest(live: Live, upload_limit: int) -> ProxiedIngest:
    """Ingest on the stack's broker and database, behind a 'proxy' at 127.0.0.1 (so the
    X-Forwarded-For address is the client) with a small upload limit. Logs go with the stack's
    logs (the raw-address scan reads them too)."""
    port = free_port()
    env = {
        **live.stack.service_env(),
        "CHATPIC_PORT": str(port),
        "CHATPIC_TRUSTED_PROXIES": "127.0.0.1/32",
        "CHATPIC_UPLOAD_RATE_LIMIT": str(upload_limit),
        "CHATPIC_UPLOAD_RATE_WINDOW_S": "600",
        "CHATPIC_DEPENDENCY_CHECK_INTERVAL_S": "0.5",  # its stop waits for the checker thread
    }
    log = live.stack.var_dir / "logs" / "ingest-proxied.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ingest"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # never outlives the test run
        )
    running = ProxiedIngest(f"http://127.0.0.1:{port}", log, proc)
    deadline = time.monotonic() + 60
    while not http_ok(f"{running.url}/readyz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            running.stop()
            raise AssertionError(f"proxied ingest did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return running


def small_png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (seed % 256, 90, 200)).save(out, "PNG")
    return out.getvalue()
