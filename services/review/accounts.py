"""Reviewer accounts, logins and sessions: plain functions over the account repositories.

Passwords are stored as argon2id hashes only. A session id is a random token of which only a
keyed hash is stored; it ends after ``session_ttl_s`` without a request and after
``session_max_s`` in any case. Failed logins are counted per username and per client; past
``max_failures`` each further failure doubles the lockout. An unknown username is handled
exactly like a wrong password: the same argon2 work, the same counters, the same answer."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.review.settings import ReviewSettings
from services.shared.accountrepo import AccountRepo, LoginFailureRepo, SessionRepo
from services.shared.errors import Conflict, DomainError, Forbidden, NotFound, RateLimited
from services.shared.passwords import hash_password, needs_rehash, verify_password
from services.shared.repos import AuditRepo
from services.shared.tokens import new_token, token_hash


class Role(StrEnum):
    REVIEWER = "reviewer"  # queues and decisions
    ADMIN = "admin"  # also accounts, banks, the evidence vault and audit export


@dataclass(frozen=True)
class Reviewer:
    """Who is signed in, as every console route sees them."""

    username: str
    role: Role
    csrf_token: str
    prefs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


PREF_TYPES: dict[str, type] = {"reveal_previews": bool}
DEFAULT_PREFS: dict[str, Any] = {"reveal_previews": False}
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 256
MAX_LOCKOUT_S = 24 * 3600
FORGET_FAILURES_S = 24 * 3600  # failure counters are dropped a day after the last one
TOUCH_EVERY_S = 60  # idle expiry moves on at most once a minute per session
LOGIN_FAILED = "Wrong username or password."


class LoginFailed(DomainError):
    status = 401
    code = "login_failed"


class LoginLocked(RateLimited):
    code = "too_many_attempts"


@dataclass(frozen=True)
class AuthPolicy:
    salt: bytes
    session_ttl_s: int
    session_max_s: int
    max_failures: int
    lockout_s: int

    @classmethod
    def from_settings(cls, settings: ReviewSettings) -> AuthPolicy:
        return cls(
            salt=settings.salt(),
            session_ttl_s=settings.review_session_ttl_s,
            session_max_s=settings.review_session_max_s,
            max_failures=max(1, settings.review_login_max_failures),
            lockout_s=max(1, settings.review_login_lockout_s),
        )

    def lockout(self, failures: int) -> int:
        """Seconds locked after the ``failures``-th failure (0 below the threshold)."""
        if failures < self.max_failures:
            return 0
        return int(min(self.lockout_s * 2 ** min(failures - self.max_failures, 20), MAX_LOCKOUT_S))


@dataclass(frozen=True)
class AccountStore:
    accounts: AccountRepo
    sessions: SessionRepo
    failures: LoginFailureRepo
    audit: AuditRepo

    def ensure_indexes(self) -> None:
        self.accounts.ensure_indexes()
        self.sessions.ensure_indexes()
        self.failures.ensure_indexes()


# --- rules for names and passwords ----------------------------------------------------------


def normalize_username(raw: str) -> str:
    return raw.strip().lower()


def check_username(raw: str) -> str:
    name = normalize_username(raw)
    if not USERNAME.match(name):
        raise DomainError(
            "A username is 2 to 32 characters: letters, digits, '.', '_' or '-'.",
            code="invalid_username",
        )
    return name


def check_role(raw: str) -> Role:
    try:
        return Role(raw)
    except ValueError:
        raise DomainError("The role is 'reviewer' or 'admin'.", code="invalid_role") from None


def check_password(password: str, username: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise DomainError(
            f"A password is at least {MIN_PASSWORD} characters.", code="weak_password"
        )
    if len(password) > MAX_PASSWORD:
        raise DomainError(
            f"A password is at most {MAX_PASSWORD} characters.", code="password_too_long"
        )
    if (len(username) >= 4 and username in password.lower()) or len(set(password)) < 4:
        raise DomainError(
            "Choose a password that is not built from the username or one repeated character.",
            code="weak_password",
        )
    return password


def generate_password() -> str:
    """A one-time password to hand over: 120 random bits, 20 URL-safe characters."""
    return secrets.token_urlsafe(15)


# --- accounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewAccount:
    username: str
    role: Role
    password: str | None  # generated: shown once to whoever created it; None if they chose it


def create_account(
    store: AccountStore,
    *,
    username: str,
    role: str,
    password: str | None,
    created_by: str,
    now: datetime,
) -> NewAccount:
    name = check_username(username)
    checked_role = check_role(role)
    generated = not password
    secret = generate_password() if generated else check_password(password or "", name)
    doc = {
        "_id": name,
        "role": checked_role.value,
        "password_hash": hash_password(secret),
        "disabled": False,
        "prefs": dict(DEFAULT_PREFS),
        "created_at": now,
        "created_by": created_by,
        "password_set_at": now,
        "password_set_by": created_by,
        "last_login_at": None,
    }
    if not store.accounts.insert(doc):
        raise Conflict("An account with this username already exists.", code="account_exists")
    store.audit.record("account.create", created_by, name, "", role=checked_role.value)
    return NewAccount(name, checked_role, secret if generated else None)


def bootstrap_admin(store: AccountStore, *, username: str, password: str, now: datetime) -> bool:
    """The first admin, from settings: only while no active admin exists."""
    if store.accounts.active_admins() > 0:
        return False
    try:
        create_account(
            store,
            username=username,
            role=Role.ADMIN,
            password=password,
            created_by="bootstrap",
            now=now,
        )
    except Conflict:
        return False
    return True


def _existing(store: AccountStore, username: str) -> tuple[str, dict[str, Any]]:
    name = normalize_username(username)
    account = store.accounts.get(name)
    if account is None:
        raise NotFound("No account has this username.", code="account_not_found")
    return name, account


def set_disabled(store: AccountStore, *, username: str, disabled: bool, by: str) -> None:
    """Disable (every session ends at once) or enable an account. Nobody disables their own
    account, and the last active admin stays."""
    name, account = _existing(store, username)
    if disabled and name == by:
        raise Forbidden("You cannot disable your own account.", code="cannot_disable_self")
    is_active_admin = account.get("role") == Role.ADMIN and not account.get("disabled")
    if disabled and is_active_admin and store.accounts.active_admins() <= 1:
        raise Conflict("The last active admin cannot be disabled.", code="last_admin")
    store.accounts.update(name, {"disabled": disabled})
    if disabled:
        store.sessions.delete_for(name)
    store.audit.record("account.disable" if disabled else "account.enable", by, name, "")


def set_password(
    store: AccountStore, *, username: str, password: str | None, by: str, now: datetime
) -> str | None:
    """A new password (the generated one is returned, to show once); every session ends."""
    name, _ = _existing(store, username)
    secret = password if password else generate_password()
    if password:
        check_password(password, name)
    store.accounts.update(
        name,
        {"password_hash": hash_password(secret), "password_set_at": now, "password_set_by": by},
    )
    store.sessions.delete_for(name)
    store.audit.record("account.password", by, name, "")
    return None if password else secret


def change_own_password(
    store: AccountStore, *, username: str, current: str, new: str, now: datetime
) -> None:
    account = store.accounts.get(username)
    if account is None or not verify_password(account.get("password_hash"), current):
        raise Forbidden("The current password is not right.", code="wrong_password")
    set_password(store, username=username, password=new, by=username, now=now)


def set_prefs(store: AccountStore, *, username: str, changes: dict[str, Any]) -> dict[str, Any]:
    updates: dict[str, Any] = {}
    for key, value in changes.items():
        kind = PREF_TYPES.get(key)
        if kind is None or not isinstance(value, kind):
            raise DomainError(f"Unknown preference or wrong type: {key}", code="invalid_pref")
        updates[f"prefs.{key}"] = value
    name, account = _existing(store, username)
    if updates:
        store.accounts.update(name, updates)
    prefs = {**DEFAULT_PREFS, **(account.get("prefs") or {})}
    prefs.update({k.removeprefix("prefs."): v for k, v in updates.items()})
    return prefs


# --- logins and sessions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    token: str  # the cookie value; only its keyed hash is stored
    csrf_token: str
    username: str


def _failure_keys(policy: AuthPolicy, username: str, client: str) -> list[str]:
    return [f"user:{token_hash(policy.salt, 'login|' + username)[:32]}", f"client:{client}"]


def login(
    store: AccountStore,
    policy: AuthPolicy,
    *,
    username: str,
    password: str,
    client: str,
    now: datetime,
) -> Session:
    """A new session for the right password, unless the username or the client is locked."""
    name = normalize_username(username)[:64]
    keys = _failure_keys(policy, name, client)
    locked = [
        d["locked_until"]
        for d in store.failures.get_many(keys)
        if d.get("locked_until") and d["locked_until"] > now
    ]
    if locked:
        wait = math.ceil((max(locked) - now).total_seconds())
        raise LoginLocked("Too many failed logins. Try again later.", retry_after_s=max(1, wait))
    account = store.accounts.get(name) if USERNAME.match(name) else None
    stored = account.get("password_hash") if account else None
    ok = verify_password(stored if len(password) <= MAX_PASSWORD else None, password)
    if not ok or account is None or account.get("disabled"):
        for key in keys:
            failures = store.failures.add(key, now, now + timedelta(seconds=FORGET_FAILURES_S))
            locked_s = policy.lockout(failures)
            if locked_s:
                until = now + timedelta(seconds=locked_s)
                store.failures.lock(key, until, until + timedelta(seconds=FORGET_FAILURES_S))
        raise LoginFailed(LOGIN_FAILED)
    store.failures.clear(keys[0])
    updates: dict[str, Any] = {"last_login_at": now}
    if stored and needs_rehash(stored):
        updates["password_hash"] = hash_password(password)
    store.accounts.update(name, updates)
    return start_session(store, policy, name, now)


def start_session(store: AccountStore, policy: AuthPolicy, username: str, now: datetime) -> Session:
    session = Session(new_token(), new_token(), username)
    ends = now + timedelta(seconds=policy.session_max_s)
    store.sessions.insert(
        {
            "_id": token_hash(policy.salt, session.token),
            "username": username,
            "csrf_token": session.csrf_token,
            "created_at": now,
            "last_seen_at": now,
            "expires_at": min(now + timedelta(seconds=policy.session_ttl_s), ends),
            "ends_at": ends,
        }
    )
    return session


def resolve_session(
    store: AccountStore, policy: AuthPolicy, token: str, now: datetime
) -> Reviewer | None:
    """The signed-in reviewer for a session cookie, or None (unknown, expired, disabled)."""
    if not token or len(token) > 128:
        return None
    sid = token_hash(policy.salt, token)
    doc = store.sessions.get(sid)
    if doc is None:
        return None
    if doc["expires_at"] <= now or doc["ends_at"] <= now:
        store.sessions.delete(sid)  # the TTL monitor only runs about once a minute
        return None
    account = store.accounts.get(str(doc["username"]))
    if account is None or account.get("disabled"):
        return None
    if doc["last_seen_at"] <= now - timedelta(seconds=TOUCH_EVERY_S):
        expires = min(now + timedelta(seconds=policy.session_ttl_s), doc["ends_at"])
        store.sessions.touch(sid, now, expires)
    return Reviewer(
        username=str(account["_id"]),
        role=Role(account["role"]),
        csrf_token=str(doc["csrf_token"]),
        prefs={**DEFAULT_PREFS, **(account.get("prefs") or {})},
    )


def end_session(store: AccountStore, policy: AuthPolicy, token: str) -> None:
    if token and len(token) <= 128:
        store.sessions.delete(token_hash(policy.salt, token))
