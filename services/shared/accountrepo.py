"""Review-console accounts, sessions and failed-login counters in MongoDB.

Sessions are stored under a keyed hash of their id (the cookie value never reaches the
database) and dropped by a TTL index once idle; login-failure counters are keyed by a hash of
the username tried and by the salted client key, never by the raw values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.shared.mongo import Doc


class AccountRepo:
    """``_id`` is the (lower-case) username."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["review_accounts"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("role", ASCENDING), ("disabled", ASCENDING)])

    def get(self, username: str) -> Doc | None:
        return self.col.find_one({"_id": username})

    def insert(self, doc: Doc) -> bool:
        """False if the username is taken."""
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    def all(self) -> list[Doc]:
        return list(self.col.find({}, {"password_hash": 0}).sort("_id", ASCENDING))

    def active_admins(self) -> int:
        return self.col.count_documents({"role": "admin", "disabled": False})

    def update(self, username: str, values: dict[str, Any]) -> bool:
        res = self.col.update_one({"_id": username}, {"$set": values})
        return res.matched_count == 1


class SessionRepo:
    """``_id`` is the keyed hash of the session id; ``expires_at`` (idle) drives the TTL index."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["review_sessions"]

    def ensure_indexes(self) -> None:
        self.col.create_index("expires_at", expireAfterSeconds=0)
        self.col.create_index("username")

    def insert(self, doc: Doc) -> None:
        self.col.insert_one(doc)

    def get(self, sid_hash: str) -> Doc | None:
        return self.col.find_one({"_id": sid_hash})

    def touch(self, sid_hash: str, seen_at: datetime, expires_at: datetime) -> bool:
        """Move the idle expiry on, once per ``seen_at`` step (a conditional update)."""
        res = self.col.update_one(
            {"_id": sid_hash, "last_seen_at": {"$lt": seen_at}},
            {"$set": {"last_seen_at": seen_at, "expires_at": expires_at}},
        )
        return res.modified_count == 1

    def delete(self, sid_hash: str) -> None:
        self.col.delete_one({"_id": sid_hash})

    def delete_for(self, username: str) -> int:
        return self.col.delete_many({"username": username}).deleted_count


class LoginFailureRepo:
    """Failed logins per key (``user:<hash>`` or ``client:<key>``), forgotten by a TTL index."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["review_login_failures"]

    def ensure_indexes(self) -> None:
        self.col.create_index("expires_at", expireAfterSeconds=0)

    def get_many(self, keys: list[str]) -> list[Doc]:
        return list(self.col.find({"_id": {"$in": keys}}))

    def add(self, key: str, at: datetime, forget_at: datetime) -> int:
        """Count one failure; the number of failures so far."""
        self.col.update_one(
            {"_id": key},
            {
                "$inc": {"failures": 1},
                "$set": {"last_at": at},
                "$max": {"expires_at": forget_at},
            },
            upsert=True,
        )
        doc = self.col.find_one({"_id": key})
        return int(doc["failures"]) if doc else 1

    def lock(self, key: str, until: datetime, forget_at: datetime) -> None:
        """Locked until ``until`` (never shortened by a concurrent, smaller lock)."""
        self.col.update_one(
            {"_id": key}, {"$max": {"locked_until": until, "expires_at": forget_at}}
        )

    def clear(self, key: str) -> None:
        self.col.delete_one({"_id": key})
