"""The database is stopped and started again (issue #9): every service reports not-ready
within seconds, a burst of requests to every service's public routes meanwhile gets 503
``unavailable`` with Retry-After (never a 500: no access line with a 5xx other than 503, no
"unhandled error", and chatpic_http_requests_total{status="5xx"} moves by exactly the 503s we
saw), and everything recovers without restarting any service. Runs late: it restarts the
database."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.integration.faults_helpers import (
    HTTP_SERVICES,
    LogMark,
    five_xx,
    served_bytes,
    upload_photo,
)
from tests.integration.links_helpers import cleared_upload, make_link, unique_photo
from tests.integration.observability_helpers import eventually
from tests.integration.test_rooms_live import make_room, ws_url
from tests.live import Live

HTML = {"accept": "text/html"}
ALL = (*HTTP_SERVICES, "scanner")
Call = tuple[str, str, Callable[[], httpx.Response]]


def public_calls(live: Live, fixture: dict[str, Any]) -> list[Call]:
    """(service, what, request) for the public routes of every HTTP service."""
    image_id, owner, token, ticket, slug = (
        fixture[k] for k in ("image_id", "owner_token", "token", "ticket", "slug")
    )
    owned = {"image_id": image_id, "owner_token": owner}
    i, ln, rv, rm = live.ingest, live.links, live.review, live.rooms
    photo = unique_photo(941_000)
    return [
        ("ingest", "upload", lambda: live.upload(photo)),
        (
            "ingest",
            "upload form",
            lambda: i.post("/upload", files={"file": ("a.jpg", photo)}, headers=HTML),
        ),
        ("ingest", "status", lambda: i.get(f"/api/v1/images/{image_id}")),
        ("ingest", "page", lambda: i.get("/", headers=HTML)),
        ("ingest", "limits", lambda: i.get("/api/v1/limits")),
        ("links", "share page", lambda: ln.get(f"/s/{token}", headers=HTML)),
        ("links", "reveal", lambda: ln.post(f"/s/{token}/reveal")),
        ("links", "reveal form", lambda: ln.post(f"/s/{token}/reveal", headers=HTML)),
        ("links", "ticket image", lambda: ln.get(f"/v/{ticket}/image")),
        ("links", "ticket page", lambda: ln.get(f"/v/{ticket}", headers=HTML)),
        ("links", "new link", lambda: ln.post("/api/v1/links", json=owned)),
        ("links", "new link form", lambda: ln.post("/links/new", data=owned, headers=HTML)),
        ("links", "owner links", lambda: ln.post("/api/v1/owner/links", json=owned)),
        (
            "links",
            "report",
            lambda: ln.post("/api/v1/reports", json={"reason": "spam", "link_token": token}),
        ),
        ("links", "gallery api", lambda: ln.get("/api/v1/gallery")),
        ("links", "gallery page", lambda: ln.get("/gallery", headers=HTML)),
        ("links", "gallery thumb", lambda: ln.get("/gallery/thumbs/no-such-entry")),
        ("links", "gallery reveal", lambda: ln.post("/g/no-such-entry/reveal")),
        ("review", "me", lambda: rv.get("/api/v1/me")),
        ("review", "queues", lambda: rv.get("/api/v1/queues")),
        ("review", "queue", lambda: rv.get("/api/v1/queues/scanner")),
        ("review", "next job", lambda: rv.post("/api/v1/queues/reports/next", json={})),
        ("review", "room reports", lambda: rv.get("/api/v1/room-reports")),
        ("review", "bank entries", lambda: rv.get("/api/v1/banks/entries")),
        ("review", "console page", lambda: rv.get("/", headers=HTML)),
        ("review", "login", lambda: login_attempt(live)),
        ("rooms", "list", lambda: rm.get("/api/v1/rooms")),
        (
            "rooms",
            "create",
            lambda: rm.post("/api/v1/rooms", json={"name": "outage", "lifetime_s": 3600}),
        ),
        ("rooms", "room", lambda: rm.get(f"/api/v1/rooms/{slug}")),
        ("rooms", "room page", lambda: rm.get(f"/r/{slug}", headers=HTML)),
        ("rooms", "rooms page", lambda: rm.get("/rooms", headers=HTML)),
        ("rooms", "image", lambda: rm.get(f"/r/{slug}/images/no-such-message")),
    ]


def login_attempt(live: Live) -> httpx.Response:
    """A well-formed login (with the form's CSRF cookie) for an account that does not exist."""
    with httpx.Client(base_url=live.review_url, timeout=30) as client:
        page = client.get("/login")
        if page.status_code != 200:
            return page
        token = client.cookies.get("review_login", "")
        form = {"username": "nobody-here", "password": "not it", "csrf_token": token}
        return client.post("/login", data=form)


def check_answer(service: str, what: str, resp: httpx.Response) -> None:
    """A refusal or an answer is fine; a 5xx must be a 503 that says so and when to retry."""
    assert resp.status_code < 500 or resp.status_code == 503, (service, what, resp.status_code)
    if resp.status_code == 503:
        assert resp.headers.get("retry-after"), (service, what)
        if resp.headers.get("content-type", "").startswith("application/json"):
            assert resp.json()["code"] == "unavailable", (service, what, resp.text)
        else:
            assert "unavailable" in resp.text, (service, what)


def not_ready_within(client: httpx.Client, timeout: float) -> bool:
    """/readyz says 503 (database: false) within ``timeout`` s, each answer within 2 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.monotonic()
        resp = client.get("/readyz")
        assert time.monotonic() - started < 2.0, "/readyz hangs on the database"
        if resp.status_code == 503:
            return bool(resp.json()["checks"]["database"] is False)
        time.sleep(0.2)
    return False


def join_room(live: Live, slug: str) -> str:
    """Try to join a room over its WebSocket: the first frame, or why there was none."""
    try:
        with connect(ws_url(live, {"slug": slug}), open_timeout=10) as conn:
            conn.send(json.dumps({"type": "join", "nickname": "outage"}))
            return str(json.loads(conn.recv(10)).get("type"))
    except Exception as exc:  # refused or closed: the metric check below says it was no 500
        return type(exc).__name__


def test_database_restart_gives_503_not_500_then_recovers(live: Live) -> None:
    image = cleared_upload(live, unique_photo(940_000))
    link = make_link(live, image, max_views=10)
    granted = live.links.post(f"/s/{link['token']}/reveal")
    assert granted.status_code == 200
    room = make_room(live)
    fixture = {
        "image_id": image[0],
        "owner_token": image[1],
        "token": link["token"],
        "ticket": granted.json()["ticket"],
        "slug": room["slug"],
    }
    pids = {k: p.pid for k, p in live.stack.procs.items()}
    clients = {s: getattr(live, s) for s in ALL}
    errors_before = {s: five_xx(clients[s]) for s in HTTP_SERVICES}
    mark = LogMark(live)

    stopped_at = time.monotonic()
    live.stack.stop_process("database")
    seen: Counter[str] = Counter()
    try:
        with ThreadPoolExecutor(32) as pool:
            # Not ready, within seconds, everywhere (checked side by side); /readyz stays fast.
            readiness = list(pool.map(lambda s: not_ready_within(clients[s], 15), ALL))
            not_ready_s = time.monotonic() - stopped_at
            assert all(readiness), dict(zip(ALL, readiness, strict=True))
            # The burst: every public route twice, all at once, and a room join.
            joined = pool.submit(join_room, live, room["slug"])
            calls = public_calls(live, fixture) * 2
            answers = list(pool.map(lambda c: (c[0], c[1], c[2]()), calls))
            joined_as = joined.result()
        for service, what, resp in answers:
            check_answer(service, what, resp)
            seen[service] += resp.status_code >= 500
        assert joined_as != "welcome"
        unavailable = sum(seen.values())
        assert unavailable >= len(calls) // 2, seen  # the database really was needed
        found = {(service, what): resp for service, what, resp in answers}
        page = found["links", "share page"]
        assert page.status_code == 503 and "text/html" in page.headers["content-type"]
        upload = found["ingest", "upload"]
        assert upload.status_code == 503 and upload.json()["code"] == "unavailable"
    finally:
        live.stack.start_database()
    back_at = time.monotonic()

    # Recovery without restarting anything.
    for service in ALL:
        eventually(lambda c=clients[service]: c.get("/readyz").status_code == 200, 30, service)
    recovered_s = time.monotonic() - back_at
    assert {k: p.pid for k, p in live.stack.procs.items() if k != "database"} == {
        k: pid for k, pid in pids.items() if k != "database"
    }
    assert not live.stack.dead()
    image_id, _ = upload_photo(live, 941_002)
    start = time.monotonic()
    assert live.wait_status(image_id, timeout=60) == "cleared"
    cleared_s = time.monotonic() - start
    assert served_bytes(live, *image)  # an image linked before the outage is served again
    assert live.review.get("/api/v1/me").status_code == 200  # the session survived
    assert live.rooms.get(f"/api/v1/rooms/{room['slug']}").status_code == 200

    # No 500 storm: every 5xx counted on a public route is one of the 503s we saw.
    for service in HTTP_SERVICES:
        moved = five_xx(clients[service]) - errors_before[service]
        assert moved == seen[service], (service, moved, seen[service])
        assert not mark.server_errors(service), (service, mark.server_errors(service)[:3])
    assert not [x for x in mark.since("scanner") if x.get("msg") == "unhandled error"]
    print(
        f"not ready after {not_ready_s:.1f} s; {unavailable} requests got 503; ready again "
        f"{recovered_s:.1f} s after the database was back; a new upload cleared in "
        f"{cleared_s:.1f} s"
    )
