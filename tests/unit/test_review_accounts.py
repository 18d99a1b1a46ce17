"""Reviewer accounts without a database: password rules, lockout with backoff and no account
enumeration, sessions stored hashed with idle and absolute expiry, and that every console route
depends on the login (with CSRF) unless it is one of the few public ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from services.review import accounts
from services.review.accounts import (
    AccountStore,
    AuthPolicy,
    LoginFailed,
    LoginLocked,
    Reviewer,
    Role,
)
from services.review.auth import PUBLIC_PATHS, require_admin, require_reviewer, safe_next
from services.review.settings import ReviewSettings
from services.shared.errors import Conflict, DomainError, Forbidden
from services.shared.tokens import token_hash
from tests.review_routes import console_routes

SALT = b"unit-test-salt"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
POLICY = AuthPolicy(SALT, session_ttl_s=600, session_max_s=3600, max_failures=3, lockout_s=10)
GOOD = "correct horse battery"


class Accounts:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def get(self, username: str) -> dict[str, Any] | None:
        doc = self.docs.get(username)
        return dict(doc) if doc else None

    def insert(self, doc: dict[str, Any]) -> bool:
        if doc["_id"] in self.docs:
            return False
        self.docs[doc["_id"]] = dict(doc)
        return True

    def all(self) -> list[dict[str, Any]]:
        return [self.docs[k] for k in sorted(self.docs)]

    def active_admins(self) -> int:
        return sum(1 for d in self.docs.values() if d["role"] == "admin" and not d["disabled"])

    def update(self, username: str, values: dict[str, Any]) -> bool:
        doc = self.docs.get(username)
        if doc is None:
            return False
        for key, value in values.items():
            if key.startswith("prefs."):
                doc.setdefault("prefs", {})[key.removeprefix("prefs.")] = value
            else:
                doc[key] = value
        return True


class Sessions:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def insert(self, doc: dict[str, Any]) -> None:
        self.docs[doc["_id"]] = dict(doc)

    def get(self, sid: str) -> dict[str, Any] | None:
        return self.docs.get(sid)

    def touch(self, sid: str, seen_at: datetime, expires_at: datetime) -> bool:
        doc = self.docs.get(sid)
        if doc is None or doc["last_seen_at"] >= seen_at:
            return False
        doc.update(last_seen_at=seen_at, expires_at=expires_at)
        return True

    def delete(self, sid: str) -> None:
        self.docs.pop(sid, None)

    def delete_for(self, username: str) -> int:
        gone = [k for k, d in self.docs.items() if d["username"] == username]
        for k in gone:
            del self.docs[k]
        return len(gone)


class Failures:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def get_many(self, keys: list[str]) -> list[dict[str, Any]]:
        return [self.docs[k] for k in keys if k in self.docs]

    def add(self, key: str, at: datetime, forget_at: datetime) -> int:
        doc = self.docs.setdefault(key, {"_id": key, "failures": 0})
        doc["failures"] += 1
        return int(doc["failures"])

    def lock(self, key: str, until: datetime, forget_at: datetime) -> None:
        doc = self.docs[key]
        doc["locked_until"] = max(doc.get("locked_until") or until, until)

    def clear(self, key: str) -> None:
        self.docs.pop(key, None)


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    def record(self, action: str, actor: str, target: str, reason: str, **data: Any) -> None:
        self.records.append((action, actor, target))


def make_store() -> AccountStore:
    return AccountStore(
        cast(Any, Accounts()), cast(Any, Sessions()), cast(Any, Failures()), cast(Any, Audit())
    )


def add(store: AccountStore, name: str, role: str = "reviewer", pw: str | None = GOOD) -> str:
    made = accounts.create_account(
        store, username=name, role=role, password=pw, created_by="boss", now=NOW
    )
    return made.password or GOOD


def login(store: AccountStore, name: str, pw: str, client: str = "c1", at: datetime = NOW) -> Any:
    return accounts.login(store, POLICY, username=name, password=pw, client=client, now=at)


# --- accounts ---------------------------------------------------------------------------------


def test_a_new_account_gets_a_generated_password_once_and_only_its_argon2id_hash_is_kept() -> None:
    store = make_store()
    made = accounts.create_account(
        store, username=" Alice ", role="reviewer", password=None, created_by="boss", now=NOW
    )
    assert made.username == "alice" and made.role is Role.REVIEWER
    assert made.password and len(made.password) >= 20
    doc = store.accounts.get("alice")
    assert doc is not None and doc["password_hash"].startswith("$argon2id$")
    assert made.password not in str(doc)
    assert login(store, "alice", made.password).username == "alice"
    chosen = accounts.create_account(
        store, username="bob", role="admin", password=GOOD, created_by="boss", now=NOW
    )
    assert chosen.password is None and chosen.role is Role.ADMIN
    assert ("account.create", "boss", "alice") in cast(Any, store.audit).records


@pytest.mark.parametrize(
    ("username", "role", "password", "code"),
    [
        ("a", "reviewer", GOOD, "invalid_username"),
        ("has space", "reviewer", GOOD, "invalid_username"),
        ("x" * 33, "reviewer", GOOD, "invalid_username"),
        ("carol", "superuser", GOOD, "invalid_role"),
        ("carol", "reviewer", "short", "weak_password"),
        ("carol", "reviewer", "aaaaaaaaaaaaaaaa", "weak_password"),
        ("carol", "reviewer", "carol-is-my-name-1", "weak_password"),
        ("carol", "reviewer", "x1" * 200, "password_too_long"),
    ],
)
def test_account_rules(username: str, role: str, password: str, code: str) -> None:
    with pytest.raises(DomainError) as err:
        add(make_store(), username, role, password)
    assert err.value.code == code


def test_a_username_is_taken_once() -> None:
    store = make_store()
    add(store, "dave")
    with pytest.raises(Conflict) as err:
        add(store, "DAVE")
    assert err.value.code == "account_exists"


def test_the_first_admin_comes_from_settings_only_while_there_is_no_admin() -> None:
    store = make_store()
    assert accounts.bootstrap_admin(store, username="admin", password=GOOD, now=NOW)
    assert not accounts.bootstrap_admin(store, username="other", password=GOOD, now=NOW)
    doc = store.accounts.get("admin")
    assert doc is not None and doc["role"] == "admin" and doc["created_by"] == "bootstrap"
    assert store.accounts.get("other") is None


def test_nobody_disables_themselves_or_the_last_admin_and_disabling_ends_sessions() -> None:
    store = make_store()
    add(store, "root", "admin")
    add(store, "eve")
    with pytest.raises(Forbidden):
        accounts.set_disabled(store, username="root", disabled=True, by="root")
    with pytest.raises(Conflict) as err:
        accounts.set_disabled(store, username="root", disabled=True, by="cli")
    assert err.value.code == "last_admin"
    session = login(store, "eve", GOOD)
    accounts.set_disabled(store, username="eve", disabled=True, by="root")
    assert accounts.resolve_session(store, POLICY, session.token, NOW) is None
    with pytest.raises(LoginFailed):
        login(store, "eve", GOOD, client="c9")
    accounts.set_disabled(store, username="eve", disabled=False, by="root")
    assert login(store, "eve", GOOD, client="c9").username == "eve"


def test_a_new_password_ends_every_session_and_own_change_needs_the_current_one() -> None:
    store = make_store()
    add(store, "frank")
    session = login(store, "frank", GOOD)
    generated = accounts.set_password(store, username="frank", password=None, by="root", now=NOW)
    assert generated and accounts.resolve_session(store, POLICY, session.token, NOW) is None
    with pytest.raises(Forbidden):
        accounts.change_own_password(
            store, username="frank", current="nope", new="another good one", now=NOW
        )
    accounts.change_own_password(
        store, username="frank", current=generated, new="another good one", now=NOW
    )
    assert login(store, "frank", "another good one").username == "frank"


def test_prefs_accept_known_keys_of_the_right_type() -> None:
    store = make_store()
    add(store, "gina")
    assert accounts.set_prefs(store, username="gina", changes={"reveal_previews": True}) == {
        "reveal_previews": True
    }
    for bad in ({"reveal_previews": "yes"}, {"theme": "dark"}):
        with pytest.raises(DomainError):
            accounts.set_prefs(store, username="gina", changes=bad)
    session = accounts.start_session(store, POLICY, "gina", NOW)
    reviewer = accounts.resolve_session(store, POLICY, session.token, NOW)
    assert reviewer is not None and reviewer.prefs == {"reveal_previews": True}


# --- logins: lockout, backoff, no enumeration -------------------------------------------------


def test_unknown_user_and_wrong_password_get_the_same_answer_and_the_same_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store()
    add(store, "hank")
    checked: list[str | None] = []
    real = accounts.verify_password

    def counting(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(accounts, "verify_password", counting)
    answers = []
    for name in ("hank", "nobody-here"):
        with pytest.raises(LoginFailed) as err:
            login(store, name, "wrong password!", client=f"client-{name}")
        answers.append((err.value.status, err.value.to_dict()))
    assert (
        answers[0]
        == answers[1]
        == (401, {"code": "login_failed", "message": "Wrong username or password."})
    )
    assert len(checked) == 2 and checked[1] is None  # the unknown user still cost an argon2 verify


def test_failures_lock_the_username_with_doubling_backoff_even_for_unknown_users() -> None:
    for name in ("ivan", "ghost"):
        store = make_store()
        add(store, "ivan")
        for i in range(POLICY.max_failures):
            with pytest.raises(LoginFailed):
                login(store, name, "bad", client=f"c{i}")  # a new client each time
        with pytest.raises(LoginLocked) as err:
            login(store, name, GOOD, client="fresh")  # even the right password waits
        assert err.value.status == 429 and err.value.headers == {"Retry-After": "10"}
        later = NOW + timedelta(seconds=11)
        with pytest.raises(LoginFailed):
            login(store, name, "bad", client="fresh2", at=later)  # 4th failure: 20 s
        with pytest.raises(LoginLocked) as err:
            login(store, name, GOOD, client="fresh3", at=later)
        assert err.value.headers == {"Retry-After": "20"}
        if name == "ivan":
            ok = login(store, name, GOOD, client="fresh4", at=later + timedelta(seconds=21))
            assert ok.username == "ivan"
            # Success forgets the username's failures.
            with pytest.raises(LoginFailed):
                login(store, name, "bad", client="fresh5", at=later + timedelta(seconds=22))


def test_failures_from_one_client_lock_that_client_across_usernames() -> None:
    store = make_store()
    add(store, "judy")
    for i in range(POLICY.max_failures):
        with pytest.raises(LoginFailed):
            login(store, f"guess{i}", "bad", client="sprayer")
    with pytest.raises(LoginLocked):
        login(store, "judy", GOOD, client="sprayer")
    assert login(store, "judy", GOOD, client="someone-else").username == "judy"


def test_lockout_grows_to_a_day_at_most() -> None:
    assert [POLICY.lockout(n) for n in range(1, 7)] == [0, 0, 10, 20, 40, 80]
    assert POLICY.lockout(10_000) == accounts.MAX_LOCKOUT_S


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_are_stored_hashed_and_end_idle_or_at_their_maximum() -> None:
    store = make_store()
    add(store, "kim", "admin")
    session = login(store, "kim", GOOD)
    sessions = cast(Any, store.sessions).docs
    sid = token_hash(SALT, session.token)
    assert list(sessions) == [sid] and session.token not in str(sessions)
    me = accounts.resolve_session(store, POLICY, session.token, NOW)
    assert me == Reviewer("kim", Role.ADMIN, session.csrf_token, {"reveal_previews": False})
    assert me.is_admin
    assert accounts.resolve_session(store, POLICY, session.token + "x", NOW) is None

    # Each request (at most once a minute) moves the idle expiry on ...
    t = NOW
    for _ in range(7):
        t += timedelta(seconds=500)
        assert accounts.resolve_session(store, POLICY, session.token, t) is not None
    assert sessions[sid]["expires_at"] == min(t + timedelta(seconds=600), sessions[sid]["ends_at"])
    # ... but never past the absolute end.
    assert accounts.resolve_session(store, POLICY, session.token, NOW + timedelta(hours=1)) is None
    assert sid not in sessions

    idle = login(store, "kim", GOOD)
    assert accounts.resolve_session(store, POLICY, idle.token, NOW + timedelta(seconds=601)) is None
    out = login(store, "kim", GOOD)
    accounts.end_session(store, POLICY, out.token)
    assert accounts.resolve_session(store, POLICY, out.token, NOW) is None


# --- transport rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("/jobs/1?q=2", "/jobs/1?q=2"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_login_redirects_only_to_this_site(given: str, want: str) -> None:
    assert safe_next(given) == want


def _dependencies(route: Any) -> set[Any]:
    found: set[Any] = set()
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call is not None:
            found.add(dep.call)
        stack.extend(dep.dependencies)
    return found


def test_every_console_route_depends_on_the_login_and_csrf_check() -> None:
    """The gate middleware closes every path without a session; this makes sure every route
    also checks the CSRF token (and the role) through the dependency."""
    routes = console_routes()
    assert len(routes) > 20
    unguarded = [
        (r.path, sorted(r.methods or ()))
        for r in routes
        if r.path not in PUBLIC_PATHS
        and not (
            getattr(r, "dependant", None) and _dependencies(r) & {require_reviewer, require_admin}
        )
    ]
    assert unguarded == []


def test_admin_only_routes() -> None:
    admin_paths = {
        r.path for r in console_routes() if r.dependant and require_admin in _dependencies(r)
    }
    for path in (
        "/api/v1/evidence/{image_id}",
        "/api/v1/banks/{bank}/entries",
        "/api/v1/banks/{bank}/import",
        "/api/v1/accounts",
        "/accounts",
        "/accounts/{username}/disable",
    ):
        assert path in admin_paths


@pytest.mark.parametrize(
    ("profile", "flag", "secure"),
    [("local", None, False), ("production", None, True), ("local", True, True)],
)
def test_cookies_are_secure_in_production_with_the_host_prefix(
    profile: str, flag: bool | None, secure: bool
) -> None:
    from fastapi.responses import Response

    from services.review.auth import AuthContext

    settings = ReviewSettings(profile=profile, secret_salt="s" * 32, review_secure_cookies=flag)
    ctx = AuthContext(settings, AuthPolicy.from_settings(settings), make_store)
    response = Response()
    ctx.set_cookie(response, ctx.session_cookie, "token", 60)
    header = response.headers["set-cookie"]
    assert header.startswith("__Host-review_session=" if secure else "review_session=")
    assert ("Secure" in header) is secure
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/" in header
