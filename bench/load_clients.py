"""The simulated people of ``make load``: uploaders and viewers, one thread and one keep-alive
``httpx.Client`` each, and the recorder they report to.

An uploader, in a loop: uploads a corpus photo (``POST /api/v1/images``), polls
``GET /api/v1/images/{id}`` every ``poll_s`` until the status is no longer ``pending``, and when
it is ``cleared`` makes a multi-view link (``POST /api/v1/links``) and hands it to the viewers.
A viewer, in a loop: picks a link that has views left, reveals it (``POST /s/{token}/reveal``)
and fetches the photo through the single-use ``image_url``; the pair is one timed reveal.

Each simulated person has its own address in X-Forwarded-For (10.1.x.y uploaders, 10.2.x.y
viewers); a stack that trusts 127.0.0.1 as a proxy keys its rate limits on it. An uploader
becomes a new person every ``uploads_per_person`` uploads (below the upload limit), as if many
people shared the service; a stack that does not trust the proxy sees one client."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Real camera photos of the shared corpus that ingest accepts (JPEG, WebP, HEIC), with their
# EXIF, GPS, ICC and orientation quirks: what phones and cameras send.
PHOTOS = (
    *(f"Landscape_{i}.jpg" for i in range(9)),
    "DSCN0010.jpg",
    "DSCN0021.jpg",
    "Canon_40D.jpg",
    "Reconyx_HC500_Hyperfire.jpg",
    "canon_hdr_NO.jpg",
    "87_OSError.jpg",
    "xmp_test.jpg",
    "iptc.jpg",
    "flower2.webp",
    "arrow.heic",
    "xiaomi.heic",
)


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes


def load_photos(corpus: Path, names: tuple[str, ...] = PHOTOS) -> list[Photo]:
    missing = [n for n in names if not (corpus / n).is_file()]
    if missing:
        raise FileNotFoundError(f"corpus files missing in {corpus}: {', '.join(missing)}")
    return [Photo(n, (corpus / n).read_bytes()) for n in names]


def address(kind: int, worker: int, person: int) -> str:
    """A private address per simulated person: 10.<kind>.<worker>.<person> (person 1..254,
    wrapping; at 10 uploads per person an uploader wraps after 2,540 uploads)."""
    return f"10.{kind}.{worker % 256}.{person % 254 + 1}"


def error_code(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


@dataclass
class Recorder:
    """Everything measured, under one lock. ``measured`` says whether the operation started
    inside the measured window (warm-up and after-window operations are not counted)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    upload_post_s: list[float] = field(default_factory=list)
    cleared_s: list[float] = field(default_factory=list)
    reveal_s: list[float] = field(default_factory=list)
    accepted: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    no_verdict: int = 0
    links_created: int = 0
    bytes_served: int = 0
    idle_waits: int = 0
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def error(self, op: str, status: str, code: str, measured: bool) -> None:
        if measured:
            with self.lock:
                self.errors[(op, status, code)] += 1

    def http_error(self, op: str, resp: httpx.Response, measured: bool) -> None:
        self.error(op, str(resp.status_code), error_code(resp), measured)

    def upload_accepted(self, post_s: float, measured: bool) -> None:
        if measured:
            with self.lock:
                self.accepted += 1
                self.upload_post_s.append(post_s)

    def verdict(self, status: str | None, wait_s: float, measured: bool) -> None:
        if not measured:
            return
        with self.lock:
            if status is None:
                self.no_verdict += 1
                return
            self.verdicts[status] += 1
            if status == "cleared":
                self.cleared_s.append(wait_s)

    def link_created(self, measured: bool) -> None:
        if measured:
            with self.lock:
                self.links_created += 1

    def revealed(self, seconds: float, size: int, measured: bool) -> None:
        if measured:
            with self.lock:
                self.reveal_s.append(seconds)
                self.bytes_served += size

    def waited(self, measured: bool) -> None:
        if measured:
            with self.lock:
                self.idle_waits += 1


@dataclass
class Slot:
    token: str
    left: int


@dataclass
class LinkPool:
    """Links with views left. A view is reserved when a viewer takes the link, so viewers never
    race each other into a used-up link: every refusal seen is the service's own."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: list[Slot] = field(default_factory=list)

    def add(self, token: str, views: int) -> None:
        with self.lock:
            self.slots.append(Slot(token, views))

    def take(self, rng: random.Random) -> str | None:
        with self.lock:
            if not self.slots:
                return None
            i = rng.randrange(len(self.slots))
            slot = self.slots[i]
            slot.left -= 1
            if slot.left <= 0:
                self.slots[i] = self.slots[-1]
                self.slots.pop()
            return slot.token

    def drop(self, token: str) -> None:
        with self.lock:
            self.slots = [s for s in self.slots if s.token != token]


@dataclass
class Load:
    """What the workers share: where to send, what to send, and when to stop."""

    ingest_url: str
    links_url: str
    photos: list[Photo]
    poll_s: float
    link_views: int
    verdict_timeout_s: float
    uploads_per_person: int = 10
    reveals_per_person: int = 20
    recorder: Recorder = field(default_factory=Recorder)
    pool: LinkPool = field(default_factory=LinkPool)
    measuring: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)  # no new operations
    abort: threading.Event = field(default_factory=threading.Event)  # give up waiting too


def poll_verdict(load: Load, client: httpx.Client, image_id: str, measured: bool) -> str | None:
    """The first status other than pending, or None if none came within the timeout."""
    deadline = time.perf_counter() + load.verdict_timeout_s
    while time.perf_counter() < deadline and not load.abort.is_set():
        time.sleep(load.poll_s)
        try:
            resp = client.get(f"/api/v1/images/{image_id}")
        except httpx.HTTPError as exc:
            load.recorder.error("status", type(exc).__name__, "", measured)
            continue
        if resp.status_code != 200:
            load.recorder.http_error("status", resp, measured)
            continue
        status = str(resp.json().get("status"))
        if status != "pending":
            return status
    return None


def uploader(load: Load, worker: int, uploaders: int) -> None:
    rec = load.recorder
    person, sent = 0, 0
    n = worker
    with (
        httpx.Client(base_url=load.ingest_url, timeout=60) as ingest,
        httpx.Client(base_url=load.links_url, timeout=60) as links,
    ):
        while not load.stop.is_set():
            if sent >= load.uploads_per_person:
                person, sent = person + 1, 0
            headers = {"X-Forwarded-For": address(1, worker, person)}
            photo = load.photos[n % len(load.photos)]
            n += uploaders
            measured = load.measuring.is_set()
            start = time.perf_counter()
            try:
                resp = ingest.post(
                    "/api/v1/images", files={"file": (photo.name, photo.data)}, headers=headers
                )
            except httpx.HTTPError as exc:
                rec.error("upload", type(exc).__name__, "", measured)
                time.sleep(0.5)
                continue
            sent += 1
            if resp.status_code != 202:
                rec.http_error("upload", resp, measured)
                time.sleep(1.0 if resp.status_code == 429 else 0.1)
                continue
            accepted_at = time.perf_counter()
            rec.upload_accepted(accepted_at - start, measured)
            body = resp.json()
            status = poll_verdict(load, ingest, str(body["image_id"]), measured)
            rec.verdict(status, time.perf_counter() - accepted_at, measured)
            if status != "cleared" or load.stop.is_set():
                continue
            made = links.post(
                "/api/v1/links",
                json={
                    "image_id": body["image_id"],
                    "owner_token": body["owner_token"],
                    "max_views": load.link_views,
                    "expires_in": 3600,
                },
                headers=headers,
            )
            if made.status_code != 201:
                rec.http_error("link", made, measured)
                continue
            rec.link_created(measured)
            load.pool.add(str(made.json()["token"]), load.link_views)


def viewer(load: Load, worker: int) -> None:
    rec = load.recorder
    rng = random.Random(worker)
    person, done = 0, 0
    with httpx.Client(base_url=load.links_url, timeout=60) as links:
        while not load.stop.is_set():
            measured = load.measuring.is_set()
            token = load.pool.take(rng)
            if token is None:
                rec.waited(measured)
                time.sleep(0.05)
                continue
            if done >= load.reveals_per_person:
                person, done = person + 1, 0
            done += 1
            headers = {"X-Forwarded-For": address(2, worker, person)}
            start = time.perf_counter()
            try:
                granted = links.post(f"/s/{token}/reveal", headers=headers)
                if granted.status_code != 200:
                    rec.http_error("reveal", granted, measured)
                    if granted.status_code in (404, 410):
                        load.pool.drop(token)
                    continue
                image = links.get(str(granted.json()["image_url"]), headers=headers)
            except httpx.HTTPError as exc:
                rec.error("reveal", type(exc).__name__, "", measured)
                continue
            elapsed = time.perf_counter() - start
            kind = image.headers.get("content-type", "")
            if image.status_code != 200 or not kind.startswith("image/") or not image.content:
                rec.http_error("image", image, measured)
                continue
            rec.revealed(elapsed, len(image.content), measured)
