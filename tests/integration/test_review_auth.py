"""Reviewer login on the real review service: every route closed without a session, login and
logout, cookies, CSRF, session expiry, lockout without account enumeration, roles, storage
(argon2id, hashed session ids) and the admin CLI."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from deploy.local.stack import ROOT
from services.review.auth import PUBLIC_PATHS
from services.shared.tokens import token_hash
from tests.live import ADMIN_USERNAME, Live
from tests.review_routes import console_routes

HTML = {"accept": "text/html"}
COOKIE = "review_session"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the review app object, routers included."""
    return {
        (m, r.path)
        for r in console_routes()
        for m in (getattr(r, "methods", None) or ())
        if m in METHODS
    }


def all_routes(live: Live) -> list[tuple[str, str]]:
    schema = live.review.get("/openapi.json")
    assert schema.status_code == 200, schema.text
    from_schema = {(m.upper(), path) for path, ops in schema.json()["paths"].items() for m in ops}
    from_app = app_routes()
    assert from_schema <= from_app, from_schema - from_app  # the running service is this app
    routes = sorted(from_app | {("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json")})
    assert len(routes) > 20
    return [(m, p) for m, p in routes if p not in PUBLIC_PATHS]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def expect_closed(resp: httpx.Response, method: str, path: str) -> None:
    where = f"{method} {path}: {resp.status_code} {resp.text[:200]}"
    if path.startswith("/api/"):
        assert resp.status_code == 401, where
        assert resp.json()["code"] == "login_required", where
    else:
        assert resp.status_code == 303, where
        assert resp.headers["location"].startswith("/login?next="), where


def test_every_route_needs_a_session(live: Live) -> None:
    routes = all_routes(live)
    for cookies in ({}, {COOKIE: "forged-or-expired-session-id"}):
        client = httpx.Client(base_url=live.review_url, cookies=cookies, timeout=30)
        with client:
            for method, path in routes:
                url = concrete(path)
                expect_closed(client.request(method, url), method, path)
                expect_closed(client.request(method, url, headers=HTML), method, path)
                if method in UNSAFE:  # a malformed body is never read before the login
                    bad = client.request(
                        method, url, content=b"{nope", headers={"content-type": "application/json"}
                    )
                    expect_closed(bad, method, path)
    page = live.review_anon.get("/jobs/abc", params={"q": "1"})
    assert page.headers["location"] == "/login?next=/jobs/abc%3Fq%3D1"
    for public in ("/healthz", "/readyz", "/metrics", "/login", "/favicon.ico"):
        assert live.review_anon.get(public).status_code == 200
    # Public on purpose and nothing else: the icon says nothing about anyone.
    assert {"/login", "/healthz", "/readyz", "/metrics", "/favicon.ico"} == PUBLIC_PATHS


def test_every_unsafe_route_needs_the_csrf_token(live: Live) -> None:
    """Logged in (as admin) but without the token, every POST/PUT/PATCH/DELETE is refused
    before it does anything."""
    session = live.review.cookies.get(COOKIE)
    client = httpx.Client(base_url=live.review_url, cookies={COOKIE: session}, timeout=30)
    with client:
        for method, path in all_routes(live):
            if method not in UNSAFE:
                continue
            for headers in ({}, {"x-csrf-token": "wrong"}):
                resp = client.request(method, concrete(path), headers=headers)
                where = f"{method} {path}: {resp.status_code} {resp.text[:200]}"
                assert resp.status_code == 403 and resp.json()["code"] == "csrf_failed", where
            form = client.request(
                method, concrete(path), data={"csrf_token": "wrong"}, headers=HTML
            )
            assert form.status_code == 403 and "csrf_failed" in form.text
    assert live.review.get("/api/v1/me").status_code == 200  # the session itself is still fine


def browser_login(live: Live, username: str, password: str, **extra: Any) -> httpx.Client:
    client = httpx.Client(base_url=live.review_url, timeout=30, headers=HTML, **extra)
    page = client.get("/login", params={"next": "/accounts"})
    assert page.status_code == 200 and 'action="/login"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    resp = client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": token.group(1),
            "next": "/accounts",
        },
    )
    assert resp.status_code == 303, resp.text
    return client


def cookie_header(resp: httpx.Response, name: str) -> str:
    found = [v for v in resp.headers.get_list("set-cookie") if v.startswith(f"{name}=")]
    assert len(found) == 1, resp.headers.get_list("set-cookie")
    return found[0]


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(live: Live) -> None:
    client = httpx.Client(base_url=live.review_url, timeout=30, headers=HTML)
    with client:
        page = client.get("/login", params={"next": "/accounts"})
        form_cookie = cookie_header(page, "review_login").lower()
        assert "httponly" in form_cookie and "samesite=strict" in form_cookie
        assert "path=/" in form_cookie and "secure" not in form_cookie  # local: plain http
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        data = {"username": "ADMIN", "password": live.admin_password, "csrf_token": token[1]}
        resp = client.post("/login", data={**data, "next": "/accounts"})
        assert resp.status_code == 303 and resp.headers["location"] == "/accounts"
        set_cookie = cookie_header(resp, COOKIE).lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert "path=/" in set_cookie and "domain" not in set_cookie
        sid = client.cookies[COOKIE]
        assert len(sid) >= 32

        home = client.get("/accounts")
        assert home.status_code == 200 and ADMIN_USERNAME in home.text
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', home.text)
        assert csrf and 'action="/logout"' in home.text
        assert client.get("/login").headers["location"] == "/"  # already logged in


def test_logout_needs_the_token_and_ends_the_session(live: Live) -> None:
    with closing(browser_login(live, ADMIN_USERNAME, live.admin_password)) as client:
        sid = client.cookies[COOKIE]
        page = client.get("/accounts")
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert csrf
        refused = client.post("/logout", data={"csrf_token": "nope"})
        assert refused.status_code == 403 and "csrf_failed" in refused.text
        out = client.post("/logout", data={"csrf_token": csrf[1]})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert live.db.review_sessions.find_one({"_id": token_hash(salt(live), sid)}) is None
        again = httpx.get(f"{live.review_url}/accounts", cookies={COOKIE: sid}, headers=HTML)
        assert again.status_code == 303 and again.headers["location"].startswith("/login")


def test_login_refuses_a_form_without_its_token_and_never_redirects_off_site(live: Live) -> None:
    client = httpx.Client(base_url=live.review_url, timeout=30, headers=HTML)
    with client:
        data = {"username": ADMIN_USERNAME, "password": live.admin_password}
        resp = client.post("/login", data={**data, "csrf_token": "made-up"})
        assert resp.status_code == 403 and "expired" in resp.text
        assert COOKIE not in client.cookies
        page = client.get("/login", params={"next": "//evil.example/"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        resp = client.post(
            "/login", data={**data, "csrf_token": token[1], "next": "//evil.example/"}
        )
        assert resp.status_code == 303 and resp.headers["location"] == "/"
        assert client.get("/login").status_code == 303  # already logged in


def salt(live: Live) -> bytes:
    return (live.stack.var_dir / "secret_salt").read_text().strip().encode()


def test_passwords_are_argon2id_and_sessions_are_stored_hashed(live: Live) -> None:
    admin = live.db.review_accounts.find_one({"_id": ADMIN_USERNAME})
    assert admin["password_hash"].startswith("$argon2id$") and admin["role"] == "admin"
    assert admin["created_by"] == "bootstrap" and live.admin_password not in str(admin)
    sid = live.review.cookies[COOKIE]
    stored = live.db.review_sessions.find_one({"_id": token_hash(salt(live), sid)})
    assert stored and stored["username"] == ADMIN_USERNAME
    assert live.db.review_sessions.count_documents({"_id": sid}) == 0
    for doc in live.db.review_sessions.find():
        assert sid not in str(doc)
    indexes = live.db.review_sessions.index_information()
    assert any(
        i["key"] == [("expires_at", 1)] and i.get("expireAfterSeconds") == 0
        for i in indexes.values()
    )


def test_an_expired_session_is_refused(live: Live) -> None:
    client, _ = live.create_reviewer()
    sid = client.cookies[COOKIE]
    assert client.get("/api/v1/me").status_code == 200
    key = {"_id": token_hash(salt(live), sid)}
    past = datetime.now(UTC) - timedelta(seconds=1)
    live.db.review_sessions.update_one(key, {"$set": {"expires_at": past}})
    resp = client.get("/api/v1/me")
    assert resp.status_code == 401 and resp.json()["code"] == "login_required"
    assert client.get("/", headers=HTML).status_code == 303

    client2, _ = live.create_reviewer()
    key2 = {"_id": token_hash(salt(live), client2.cookies[COOKIE])}
    live.db.review_sessions.update_one(key2, {"$set": {"ends_at": past}})  # absolute end
    assert client2.get("/api/v1/me").status_code == 401


def test_csrf_is_checked_on_forms_and_api_posts(live: Live) -> None:
    client, _ = live.create_reviewer()
    token = client.headers.pop("x-csrf-token")
    resp = client.post("/api/v1/me/prefs", json={"reveal_previews": True})
    assert resp.status_code == 403 and resp.json()["code"] == "csrf_failed"
    ok = client.post(
        "/api/v1/me/prefs", json={"reveal_previews": True}, headers={"x-csrf-token": token}
    )
    assert ok.status_code == 200 and ok.json() == {"prefs": {"reveal_previews": True}}
    with closing(browser_login(live, ADMIN_USERNAME, live.admin_password)) as admin:
        form = {"username": "csrf-victim", "role": "admin"}
        refused = admin.post("/accounts", data=form)
        assert refused.status_code == 403 and "csrf_failed" in refused.text
        assert live.db.review_accounts.find_one({"_id": "csrf-victim"}) is None


def from_address() -> httpx.HTTPTransport:
    """A fresh loopback source address: this test's failures lock only its own client key."""
    address = f"127.{random.randint(1, 250)}.{random.randint(0, 250)}.{random.randint(2, 250)}"
    return httpx.HTTPTransport(local_address=address)


def api_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    client.get("/login")
    token = client.cookies.get("review_login", "")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def test_failed_logins_lock_out_with_the_same_answer_for_unknown_users(live: Live) -> None:
    _, password = live.create_reviewer("lockme")
    answers: dict[str, list[tuple[int, Any]]] = {}
    for name in ("lockme", "no-such-user"):
        with httpx.Client(base_url=live.review_url, transport=from_address()) as client:
            answers[name] = []
            for _ in range(5):  # CHATPIC_REVIEW_LOGIN_MAX_FAILURES
                resp = api_login(client, name, "not the password")
                answers[name].append((resp.status_code, resp.json()))
            locked = api_login(client, name, password)
            body = locked.json()
            assert 1 <= body.pop("retry_after") <= 2
            answers[name].append((locked.status_code, body))
            assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 2
            if name == "lockme":  # the username is locked from any client
                with httpx.Client(base_url=live.review_url, transport=from_address()) as other:
                    assert api_login(other, name, password).status_code == 429
    assert answers["lockme"] == answers["no-such-user"]  # no account enumeration
    failed = {"code": "login_failed", "message": "Wrong username or password."}
    assert answers["lockme"][:5] == [(401, failed)] * 5
    assert answers["lockme"][5][1]["code"] == "too_many_attempts"

    metrics = live.review_anon.get("/metrics").text
    assert 'chatpic_review_logins_total{outcome="locked"}' in metrics

    # When the lockout ends (CHATPIC_REVIEW_LOGIN_LOCKOUT_S=2 in the test stack), it logs in.
    time.sleep(2.2)
    with httpx.Client(base_url=live.review_url, transport=from_address()) as elsewhere:
        assert api_login(elsewhere, "lockme", password).status_code == 200

    # One client spraying many usernames is locked too, whatever the username.
    with httpx.Client(base_url=live.review_url, transport=from_address()) as sprayer:
        for i in range(5):
            assert api_login(sprayer, f"spray-{i}", "guess").status_code == 401
        assert api_login(sprayer, "lockme", password).status_code == 429

    # A browser sees the login page again, with the same sentence.
    with httpx.Client(base_url=live.review_url, transport=from_address(), headers=HTML) as b:
        page = b.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        data = {"username": "lockme", "password": "wrong", "csrf_token": token[1]}
        resp = b.post("/login", data=data)
        assert resp.status_code == 401 and "Wrong username or password." in resp.text
        assert 'action="/login"' in resp.text


def test_reviewers_are_refused_admin_routes(live: Live) -> None:
    reviewer, _ = live.create_reviewer()
    me = reviewer.get("/api/v1/me").json()
    assert me["role"] == "reviewer" and me["prefs"] == {"reveal_previews": False}
    for method, path, kwargs in (
        ("GET", "/api/v1/banks/entries", {}),
        ("POST", "/api/v1/banks/spam/entries", {"json": {"hash": "0" * 16, "reason": "x"}}),
        ("GET", "/api/v1/evidence/whatever", {"params": {"reason": "curious"}}),
        ("GET", "/api/v1/accounts", {}),
        ("POST", "/api/v1/accounts", {"json": {"username": "sneaky", "role": "admin"}}),
    ):
        resp = reviewer.request(method, path, **kwargs)
        assert resp.status_code == 403 and resp.json()["code"] == "admin_only", (path, resp.text)
    page = reviewer.get("/accounts", headers=HTML)
    assert page.status_code == 403 and "admin_only" in page.text
    assert live.db.review_accounts.find_one({"_id": "sneaky"}) is None
    queue = reviewer.get("/", headers=HTML)
    assert queue.status_code == 200 and 'href="/accounts"' not in queue.text


def test_admin_creates_disables_and_resets_accounts_through_the_pages(live: Live) -> None:
    with closing(browser_login(live, ADMIN_USERNAME, live.admin_password)) as admin:
        page = admin.get("/accounts")
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert csrf
        token = csrf[1]
        made = admin.post(
            "/accounts", data={"username": "Pat", "role": "reviewer", "csrf_token": token}
        )
        assert made.status_code == 201 and "only this once" in made.text
        shown = re.search(r'<code id="one-time-password">([^<]+)</code>', made.text)
        assert shown
        assert shown[1] not in admin.get("/accounts").text  # shown once, never again
        pat = live.login("pat", shown[1])
        assert pat.get("/api/v1/me").json()["username"] == "pat"

        again = admin.post("/accounts", data={"username": "pat", "csrf_token": token})
        assert again.status_code == 409 and "already exists" in again.text
        weak = admin.post(
            "/accounts", data={"username": "quinn", "password": "short", "csrf_token": token}
        )
        assert weak.status_code == 400 and "at least 12" in weak.text

        off = admin.post("/accounts/pat/disable", data={"csrf_token": token})
        assert off.status_code == 303 and off.headers["location"] == "/accounts?done=disabled"
        assert pat.get("/api/v1/me").status_code == 401  # its session ended at once
        with httpx.Client(base_url=live.review_url, transport=from_address()) as c:
            assert api_login(c, "pat", shown[1]).status_code == 401
        self_off = admin.post(f"/accounts/{ADMIN_USERNAME}/disable", data={"csrf_token": token})
        assert self_off.status_code == 403

        assert admin.post("/accounts/pat/enable", data={"csrf_token": token}).status_code == 303
        reset = admin.post("/accounts/pat/password", data={"csrf_token": token})
        fresh = re.search(r'<code id="one-time-password">([^<]+)</code>', reset.text)
        assert reset.status_code == 200 and fresh and fresh[1] != shown[1]
        pat = live.login("pat", fresh[1])

        # Pat changes the password to one of their own; other sessions end.
        page = pat.get("/password", headers=HTML)
        assert page.status_code == 200
        changed = pat.post(
            "/password",
            data={"current": fresh[1], "new": "pats own passphrase"},
            headers=HTML,
        )
        assert changed.status_code == 200 and "was changed" in changed.text
        assert pat.get("/api/v1/me").status_code == 200  # this browser got a new session
        assert live.login("pat", "pats own passphrase").get("/api/v1/me").status_code == 200
        audit = {d["action"] for d in live.db.audit.find({"target": "pat"})}
        assert {"account.create", "account.disable", "account.enable"} <= audit


def test_the_cli_creates_an_admin_that_can_log_in(live: Live, tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPIC_")}
    env["CHATPIC_MONGO_URI"] = f"mongodb://127.0.0.1:{live.stack.ports.mongo}/"
    cmd = [sys.executable, "-m", "services.review.cli", "create-admin"]
    out = subprocess.run(
        [*cmd, "cli-admin"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    password = re.search(r"Password \(shown once\): (\S+)", out.stdout)
    assert password
    admin = live.login("cli-admin", password[1])
    assert admin.get("/api/v1/me").json()["role"] == "admin"
    assert admin.get("/api/v1/accounts").status_code == 200

    secret = tmp_path / "pw"
    secret.write_text("a chosen admin passphrase\n")
    out = subprocess.run(
        [*cmd, "cli-admin2", "--password-file", str(secret)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "shown once" not in out.stdout
    assert live.login("cli-admin2", "a chosen admin passphrase").get("/api/v1/me").is_success

    dup = subprocess.run(
        [*cmd, "cli-admin"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert dup.returncode == 1 and "already exists" in dup.stderr


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_api_docs_are_behind_the_login(live: Live, path: str) -> None:
    assert live.review_anon.get(path).status_code == 303
    assert live.review.get(path).status_code == 200
    assert live.review_anon.get("/redoc").status_code in (303, 404)
