"""Security checks on the live stack after it has done real work (this file runs after most
others; its own end-to-end run, tests/integration/security_helpers.py, adds a visitor with an
address of its own and proxy headers naming others):

- every review-console route, with every method and real ids, and with path and cookie tricks,
  is closed to anonymous callers;
- link, owner, session and ticket tokens carry at least 128 random bits and are stored only as
  keyed hashes (every collection of every database is scanned for the raw values, and every
  log file);
- no raw client address, nor an unsalted hash of one, is in any collection or log line;
- every image response carries the security headers and the type of the bytes it sends;
- the upload and report rate limits hold at their limit (429 with Retry-After).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.links.settings import LinksSettings
from services.shared.clients import client_key, reduce_address
from services.shared.tokens import token_hash
from tests.integration.links_helpers import unique_photo
from tests.integration.security_helpers import (
    FORWARDED_FOR,
    REAL_IP,
    VISITOR,
    XFF_V4,
    XFF_V6,
    Journey,
    ProxiedIngest,
    image_type,
    run_journey,
    small_png,
    start_proxied_ingest,
    upload,
    visitor_client,
)
from tests.live import ADMIN_USERNAME, Live
from tests.review_routes import console_routes

REPORTER = "127.94.29.143"  # the report rate-limit test's own client
UPLOAD_LIMIT = 3  # the proxied ingest's upload limit
# The only console paths anyone may reach: probes, the scrape, the login form and its icon.
PUBLIC_CONSOLE_PATHS = {"/login", "/healthz", "/readyz", "/metrics", "/favicon.ico"}
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def journey(live: Live) -> Journey:
    return run_journey(live)


@pytest.fixture(scope="module")
def proxied(live: Live) -> dict[str, Any]:
    """Uploads through an ingest that trusts 127.0.0.1 as its reverse proxy: the
    X-Forwarded-For address is the client. As many as the published limit from one IPv6 /64,
    then one more, and one from another address of the same /64; then one IPv4 client. The
    process is stopped before the checks (its log is complete for the address scan)."""
    ingest: ProxiedIngest = start_proxied_ingest(live, UPLOAD_LIMIT)
    try:
        with httpx.Client(base_url=ingest.url, timeout=30) as client:

            def send(address: str, seed: int) -> httpx.Response:
                return client.post(
                    "/api/v1/images",
                    files={"file": ("a.png", small_png(seed))},
                    headers={"X-Forwarded-For": f"{address}, 127.0.0.1"},
                )

            limits = client.get("/api/v1/limits").json()
            v6 = [send(XFF_V6, i) for i in range(limits["upload_rate"]["uploads"] + 1)]
            neighbour = send("2001:db8:1234:5678::1", 50)
            v4 = send(XFF_V4, 51)
    finally:
        ingest.stop()
    port = int(ingest.url.rsplit(":", 1)[1])
    return {"limits": limits, "v6": v6, "neighbour": neighbour, "v4": v4, "port": port}


# ---- the review console is closed to anonymous callers -----------------------------------


def real_ids(live: Live, journey: Journey) -> dict[str, str]:
    """Path parameters that name things that exist (so a route that forgot its guard would
    have something to hand out)."""
    entry = live.db.bank_entries.find_one({"bank": "security-journey"}) or {}
    room_report = live.db.room_reports.find_one() or {}
    return {
        "job_id": journey.job_id,
        "image_id": journey.blocked_id,
        "username": ADMIN_USERNAME,
        "bank": "security-journey",
        "entry_id": str(entry.get("_id", "x1")),
        "report_id": str(room_report.get("_id", "x1")),
        "queue": "reports",
    }


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: ids.get(m[1], "x1"), path)


def assert_closed(resp: httpx.Response, what: str) -> None:
    where = f"{what}: {resp.status_code} {resp.headers.get('content-type')} {resp.text[:200]}"
    if resp.status_code == 303:
        assert resp.headers["location"].startswith("/login?next="), where
        return
    assert resp.status_code == 401, where
    if resp.request.method != "HEAD":
        assert resp.json()["code"] == "login_required", where


def test_every_console_route_and_method_is_closed_with_real_ids(
    live: Live, journey: Journey
) -> None:
    """Beyond test_review_auth (five methods, placeholder ids): all eight methods on every
    path of the app, ids of things that exist, and cookies that are not a session: a stored
    session hash (what a database thief holds), the login form's cookie, a CSRF token."""
    ids = real_ids(live, journey)
    walked = {r.path for r in console_routes() if hasattr(r, "path")}
    paths = sorted((walked | {"/docs", "/openapi.json"}) - PUBLIC_CONSOLE_PATHS)
    assert "/api/v1/evidence/{image_id}" in paths and "/api/v1/jobs/{job_id}/image" in paths
    stored = [str(d["_id"]) for d in live.db.review_sessions.find({}, {"_id": 1}).limit(5)]
    assert stored
    login_form = httpx.get(f"{live.review_url}/login").cookies["review_login"]
    cookie_sets: list[dict[str, str]] = [
        {},
        {"review_session": stored[0]},
        {"review_session": login_form},
        {"review_session": live.review.headers["x-csrf-token"]},
    ]
    checked = 0
    for n, cookies in enumerate(cookie_sets):
        methods = ALL_METHODS if n == 0 else ("GET", "POST", "DELETE")  # forged: a sample
        with httpx.Client(base_url=live.review_url, cookies=cookies, timeout=30) as client:
            for path in paths:
                url = fill(path, ids)
                for method in methods:
                    assert_closed(client.request(method, url), f"{method} {url} {cookies}")
                    checked += 1
                assert_closed(client.get(url, headers=HTML), f"GET {url} as a page {cookies}")
    assert checked >= len(paths) * (len(ALL_METHODS) + 3 * 3) and len(paths) >= 40
    for sid in stored:  # no stored session id works as a cookie
        resp = httpx.get(f"{live.review_url}/api/v1/me", cookies={"review_session": sid})
        assert resp.status_code == 401
    # The real ids were real: the admin gets the bytes the anonymous callers did not.
    assert live.review.get(fill("/api/v1/jobs/{job_id}/image", ids)).status_code == 200
    evidence = live.review.get(
        fill("/api/v1/evidence/{image_id}", ids), params={"reason": "audit check"}
    )
    assert evidence.status_code == 200 and evidence.content


def raw_request(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One HTTP/1.1 request with the request target exactly as given (no client-side
    normalisation of dot segments or escapes); the status and the head of the answer."""
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    text = data.decode(errors="replace")
    return int(text.split(" ", 2)[1]), text[:600]


TRICKS = [
    "/api/v1/accounts/",
    "//api/v1/accounts",
    "/API/V1/ACCOUNTS",
    "/api/v1/%61ccounts",
    "/api%2fv1%2faccounts",
    "/./api/v1/accounts",
    "/login/../api/v1/accounts",
    "/login/..%2fapi/v1/accounts",
    "/metrics/../api/v1/accounts",
    "/healthz/%2e%2e/api/v1/accounts",
    "/login;/../api/v1/accounts",
    "/api/v1/accounts;login",
    "/api/v1/accounts?next=/login",
    "/api/v1/accounts%00",
    "/login%00/../api/v1/accounts",
    "/accounts/",
    "/login/../accounts",
    "http://127.0.0.1/api/v1/accounts",
]


def test_path_and_header_tricks_do_not_open_the_console(live: Live) -> None:
    port = live.stack.ports.review
    for target in TRICKS:
        status, head = raw_request(port, target)
        # 404 would mean the gate let it through to the router: never for these.
        assert status in (303, 400, 401), f"{target}: {head}"
        assert "password_hash" not in head and f'"{ADMIN_USERNAME}"' not in head, target
        if status == 303:
            assert "\r\nlocation: /login?next=" in head.lower(), f"{target}: {head}"
    for headers in (
        {"X-Original-URL": "/login"},
        {"X-Rewrite-URL": "/login"},
        {"X-HTTP-Method-Override": "GET"},
        {"X-Forwarded-Prefix": "/login"},
        {"X-Forwarded-User": ADMIN_USERNAME, "Remote-User": ADMIN_USERNAME},
    ):
        status, head = raw_request(port, "/api/v1/accounts", headers)
        assert status == 401, f"{headers}: {head}"


# ---- tokens: entropy and storage ----------------------------------------------------------

TOKEN_KINDS = (
    "owner token",
    "link token",
    "link session key",
    "view ticket",
    "gallery link token",
    "room owner token",
    "room photo owner token",
    "blocked photo owner token",
)
BASE64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
HEX = set("0123456789abcdef")


def bits(token: str) -> float:
    """Entropy bound of a random string of this alphabet and length (its best case)."""
    chars = set(token)
    if chars <= HEX:
        return len(token) * 4.0
    assert chars <= BASE64URL, f"unexpected characters in {token!r}"
    return len(token) * math.log2(64)


def test_tokens_carry_at_least_128_random_bits(journey: Journey, proxied: dict[str, Any]) -> None:
    tokens = {kind: journey.secrets[kind] for kind in TOKEN_KINDS}
    for i, resp in enumerate(proxied["v6"][:UPLOAD_LIMIT]):
        tokens[f"proxied owner token {i}"] = resp.json()["owner_token"]
    for kind, token in tokens.items():
        assert bits(token) >= 128, f"{kind}: {len(token)} characters, {bits(token):.0f} bits"
    assert len(set(tokens.values())) == len(tokens)  # never one value handed out twice
    # Their characters spread over the whole alphabet (a short or patterned source would not).
    pooled = "".join(t for t in tokens.values() if not set(t) <= HEX)
    assert len(pooled) >= 256 and len(set(pooled)) >= 48, sorted(set(pooled))


def database_documents(live: Live) -> Iterator[tuple[str, str]]:
    """(database.collection, the document as JSON) for every document of every database of
    the stack's server; GridFS file documents (metadata) included, chunk bytes left out (they
    are the re-encoded images we wrote)."""
    for db_name in live.mongo.list_database_names():
        if db_name in ("admin", "local", "config"):
            continue
        db = live.mongo[db_name]
        for col in db.list_collection_names():
            projection = {"data": 0} if col.endswith(".chunks") else None
            for doc in db[col].find({}, projection):
                yield f"{db_name}.{col}", json.dumps(doc, default=str)


def log_lines(live: Live) -> Iterator[tuple[str, str]]:
    for path in sorted((live.stack.var_dir / "logs").rglob("*")):
        if path.is_file():
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                yield f"{path.name}:{n}", line


@pytest.fixture(scope="module")
def everything(live: Live, journey: Journey, proxied: dict[str, Any]) -> list[tuple[str, str]]:
    """Every document and log line, read once after both end-to-end runs."""
    return [*database_documents(live), *log_lines(live)]


def find(haystack: list[tuple[str, str]], needles: dict[str, str]) -> list[str]:
    found = []
    for where, text in haystack:
        lowered = text.lower()
        for what, needle in needles.items():
            if needle.lower() in lowered:
                found.append(f"{what} in {where}: ...{text[:300]}")
    return found


def test_secrets_are_stored_only_hashed_and_never_logged(
    live: Live, journey: Journey, everything: list[tuple[str, str]]
) -> None:
    salt = live.stack.salt().encode()
    s = journey.secrets
    # The keyed hashes are there (so the scan below looks at the right documents)...
    assert live.db.links.find_one({"_id": token_hash(salt, s["link token"])})
    assert live.db.links.find_one({"session_hash": token_hash(salt, s["link session key"])})
    owner_hash = token_hash(salt, s["owner token"])
    assert live.db.images.find_one({"_id": journey.image_id})["owner_token_hash"] == owner_hash
    room = live.db.rooms.find_one({"slug": journey.room["slug"]})
    assert room["owner_token_hash"] == token_hash(salt, s["room owner token"])
    # ...and no raw value is anywhere, in any database or any log line.
    leaks = find(everything, dict(s))
    assert not leaks, "\n".join(leaks[:20])


# ---- no raw client address ----------------------------------------------------------------


def address_forms(address: str) -> dict[str, str]:
    """The address as text in every spelling, its reduced form, and unsalted digests of
    either (a plain hash of an IPv4 address is reversed by trying all 2^32)."""
    ip = ipaddress.ip_address(address)
    forms = {address: address, f"{address} exploded": ip.exploded}
    reduced = reduce_address(address)
    if ip.version == 6:
        forms[f"{address} /64"] = reduced
        forms[f"{address} prefix"] = ip.exploded[:20]
        forms[f"{address} short prefix"] = str(ip.compressed).rsplit("::", 1)[0] + ":"
    for text in {address, reduced}:
        for scope in ("", "upload", "report", "rooms", "review-login"):
            for msg in (text, f"{scope}|{text}"):
                for algo in ("md5", "sha1", "sha256"):
                    digest = hashlib.new(algo, msg.encode()).hexdigest()
                    forms[f"{algo}({msg})"] = digest[:32]
    return forms


CLIENT_LOOPBACK = re.compile(r"127\.0\.0\.1(?::(\d+))?")


def loopback_mentions(live: Live, text: str, known_ports: set[int]) -> list[str]:
    """Mentions of 127.0.0.1 that could be a client's address. Allowed: the stack's own
    configuration, which names 127.0.0.1 as a host in URLs (``//127.0.0.1:PORT``, the public
    URLs, the database and broker addresses) or as host:port of one of the stack's own
    listeners, and the trusted-proxy setting ``127.0.0.1/32`` of the proxied ingest."""
    bad = []
    for m in CLIENT_LOOPBACK.finditer(text):
        before = text[max(0, m.start() - 2) : m.start()]
        port = int(m[1]) if m[1] else None
        if before == "//" or port in known_ports or text[m.end() : m.end() + 3] == "/32":
            continue
        bad.append(text[max(0, m.start() - 80) : m.end() + 40])
    return bad


def test_no_raw_client_address_in_any_collection_or_log_line(
    live: Live, journey: Journey, proxied: dict[str, Any], everything: list[tuple[str, str]]
) -> None:
    salt = live.stack.salt().encode()
    # The addresses were really seen: the visitor's reports carry its salted key, the proxied
    # ingest counted the X-Forwarded-For /64 (believed, because it trusts 127.0.0.1).
    report = live.db.reports.find_one({"_id": journey.report_id})
    assert report["reporter"] == client_key(salt, VISITOR, "report")
    v6_key = client_key(salt, XFF_V6, "upload")
    assert live.db.rate_limits.count_documents({"_id": {"$regex": f"^upload:{v6_key}:"}}) == 1
    assert [r.status_code for r in proxied["v6"]][-1] == 429

    haystack = everything
    needles: dict[str, str] = {}
    for address in (VISITOR, REPORTER, XFF_V4, XFF_V6, FORWARDED_FOR, REAL_IP):
        needles.update(address_forms(address))
    leaks = find(haystack, needles)
    assert not leaks, "\n".join(leaks[:20])

    p = live.stack.ports
    known = {getattr(p, name) for name in p.__dataclass_fields__}
    known |= set(live.stack.scanner_ports.values())
    known.add(proxied["port"])
    mentions = [
        f"{where}: {hit}"
        for where, text in haystack
        for hit in loopback_mentions(live, text, known)
    ]
    assert not mentions, "\n".join(mentions[:20])


# ---- image responses ----------------------------------------------------------------------


def test_image_responses_carry_the_security_headers_and_the_real_type(journey: Journey) -> None:
    assert set(journey.images) == {
        "links reveal image",
        "links gallery thumbnail",
        "rooms image",
        "rooms thumbnail",
        "review preview",
        "review evidence",
    }
    for route, resp in journey.images.items():
        h = resp.headers
        where = f"{route}: {dict(h)}"
        assert h.get("x-content-type-options") == "nosniff", where
        policy = [p.strip() for p in h.get("content-security-policy", "").split(";")]
        assert "default-src 'none'" in policy and "sandbox" in policy, where
        assert h.get("referrer-policy") == "no-referrer", where
        assert h.get("cross-origin-resource-policy") in ("same-origin", "same-site"), where
        assert h.get("cache-control", "").startswith("private"), where
        assert h.get("content-type") == image_type(resp.content), where
    reveal = journey.images["links reveal image"]
    assert reveal.headers["cache-control"] == "private, no-store"  # a view-limited link


# ---- rate limits --------------------------------------------------------------------------


def test_upload_rate_limit_holds_per_client_behind_a_trusted_proxy(
    proxied: dict[str, Any],
) -> None:
    limit = proxied["limits"]["upload_rate"]
    assert limit == {"uploads": UPLOAD_LIMIT, "window_s": 600}  # published as configured
    codes = [r.status_code for r in proxied["v6"]]
    assert codes == [202] * UPLOAD_LIMIT + [429], codes
    for refused in (proxied["v6"][-1], proxied["neighbour"]):  # one IPv6 /64 is one client
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= limit["window_s"]
        assert refused.json()["retry_after"] == int(refused.headers["retry-after"])
    assert proxied["v4"].status_code == 202  # another client is not held back


def test_report_rate_limit_holds_per_client(live: Live) -> None:
    env = live.stack.service_env()
    limit = int(env.get("CHATPIC_REPORT_RATE_LIMIT", LinksSettings().report_rate_limit))
    window = int(env.get("CHATPIC_REPORT_RATE_WINDOW_S", LinksSettings().report_rate_window_s))
    with visitor_client(f"http://127.0.0.1:{live.stack.ports.ingest}") as ingest:
        owner = upload(ingest, unique_photo(90904))
    image_id = owner["image_id"]
    listed = live.links.post(
        "/api/v1/links",
        json={
            "image_id": image_id,
            "owner_token": owner["owner_token"],
            "max_views": 5,
            "gallery_category": "memes",
        },
    )
    assert listed.status_code == 201, listed.text
    public_id = listed.json()["gallery"]["public_id"]
    body = {"reason": "other", "details": "rate limit", "image_id": image_id}
    with visitor_client(str(live.links.base_url), source=REPORTER) as reporter:
        codes = [reporter.post("/api/v1/reports", json=body).status_code for _ in range(limit)]
        assert codes == [201] * limit, codes
        refused = reporter.post("/api/v1/reports", json=body)
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= window
        gallery = reporter.post(f"/api/v1/gallery/{public_id}/reports", json={"reason": "spam"})
        assert gallery.status_code == 429  # every way of reporting spends the same budget
    assert live.db.reports.count_documents({"image_id": image_id}) == limit  # none stored
    # Another client still reports.
    with visitor_client(str(live.links.base_url), source="127.94.29.144") as other:
        assert other.post("/api/v1/reports", json=body).status_code == 201
