"""Mongo repositories. Writes that race use one conditional update_one (never find_one_and_update,
which scans the whole collection on the local database), then find_one if the document is needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from services.shared.mongo import Doc
from services.shared.status import ImageStatus


def now() -> datetime:
    return datetime.now(UTC)


class ImageRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["images"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("status", ASCENDING), ("publish.last_at", ASCENDING)])

    def insert_pending(self, doc: Doc) -> None:
        doc = {**doc, "status": ImageStatus.PENDING.value, "created_at": now()}
        # attempts: acknowledged publishes; failures: publishes the broker did not take.
        doc.setdefault(
            "publish", {"attempts": 0, "failures": 0, "last_at": None, "published_at": None}
        )
        self.col.insert_one(doc)

    def get(self, image_id: str) -> Doc | None:
        return self.col.find_one({"_id": image_id})

    def mark_published(self, image_id: str) -> None:
        t = now()
        self.col.update_one(
            {"_id": image_id},
            {
                "$set": {"publish.published_at": t, "publish.last_at": t},
                "$inc": {"publish.attempts": 1},
            },
        )

    def claim_for_publish(self, image_id: str, last_at: datetime | None) -> bool:
        """Several ingest processes may relay at once: only the one whose conditional update
        moves ``last_at`` from the value it read publishes this round."""
        res = self.col.update_one(
            {"_id": image_id, "publish.last_at": last_at}, {"$set": {"publish.last_at": now()}}
        )
        return res.modified_count == 1

    def mark_publish_failed(self, image_id: str) -> None:
        self.col.update_one(
            {"_id": image_id}, {"$set": {"publish.last_at": now()}, "$inc": {"publish.failures": 1}}
        )

    def due_for_publish(
        self, republish_after_s: float, retry_after_s: float, limit: int
    ) -> list[Doc]:
        """Pending images to announce: never tried (new uploads, first); refused by the broker
        and not tried for ``retry_after_s``; or acknowledged ``republish_after_s`` ago with
        still no verdict (the record may be lost: the local broker forgets everything)."""
        pending = ImageStatus.PENDING.value
        retry = now() - timedelta(seconds=retry_after_s)
        stale = now() - timedelta(seconds=republish_after_s)
        queries: list[dict[str, Any]] = [
            {"status": pending, "publish.published_at": None, "publish.last_at": None},
            {"status": pending, "publish.published_at": None, "publish.last_at": {"$lte": retry}},
            {"status": pending, "publish.published_at": {"$lt": stale}},
        ]
        out: dict[str, Doc] = {}
        for query in queries:
            for doc in self.col.find(query).limit(limit):
                out.setdefault(doc["_id"], doc)
        return list(out.values())[:limit]

    def record_verdict(self, image_id: str, status: ImageStatus, verdict: Doc) -> bool:
        """Pending → verdict, once. False if the image already has a verdict (idempotent)."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.PENDING.value},
            {"$set": {"status": status.value, "verdict": verdict, "scanned_at": now()}},
        )
        return res.modified_count == 1

    def live_hashes(self, signal_type: str) -> list[tuple[str, str]]:
        """(image id, hash) of every image that is or may become visible, for one signal."""
        query = {"status": {"$in": [ImageStatus.CLEARED.value, ImageStatus.REVIEW.value]}}
        out = []
        for doc in self.col.find(query, {f"verdict.hashes.{signal_type}": 1}):
            value = (doc.get("verdict") or {}).get("hashes", {}).get(signal_type)
            if isinstance(value, str):
                out.append((str(doc["_id"]), value))
        return out

    def take_down(self, image_id: str, removal: Doc) -> bool:
        """Cleared or held → removed, once; every link then refuses it (451)."""
        res = self.col.update_one(
            {
                "_id": image_id,
                "status": {"$in": [ImageStatus.CLEARED.value, ImageStatus.REVIEW.value]},
            },
            {"$set": {"status": ImageStatus.REMOVED.value, "removal": {**removal, "at": now()}}},
        )
        return res.modified_count == 1

    def set_evidence(self, image_id: str, evidence: Doc) -> bool:
        """Blocked bytes now live in the vault: the image keeps no servable blob at all."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.BLOCKED.value, "evidence": {"$exists": False}},
            {"$set": {"evidence": evidence, "blob_id": None, "thumb_blob_id": None}},
        )
        return res.modified_count == 1

    def evidence_due(self, limit: int = 100) -> list[Doc]:
        query = {"evidence.expires_at": {"$lt": now()}, "evidence.purged_at": None}
        return list(self.col.find(query).limit(limit))

    def mark_evidence_purged(self, image_id: str) -> None:
        self.col.update_one({"_id": image_id}, {"$set": {"evidence.purged_at": now()}})

    def oldest_pending_age_s(self) -> float:
        doc = self.col.find_one(
            {"status": ImageStatus.PENDING.value}, sort=[("created_at", ASCENDING)]
        )
        if doc is None:
            return 0.0
        created: datetime = doc["created_at"]
        return max(0.0, (now() - created).total_seconds())

    def list_by_status(self, status: ImageStatus, limit: int = 100) -> list[Doc]:
        return list(
            self.col.find({"status": status.value}).sort("created_at", ASCENDING).limit(limit)
        )


class BankRepo:
    """Hash banks. A generation counter tells scanners, with one cheap read, that the bank moved."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["bank_entries"]
        self.meta = db["bank_meta"]
        self.bank_settings = db["bank_settings"]  # _id = bank name
        self.changes = db["bank_changes"]

    def ensure_indexes(self) -> None:
        self.col.create_index(
            [("bank", ASCENDING), ("signal_type", ASCENDING), ("hash", ASCENDING)]
        )

    def add(self, entry: Doc) -> None:
        doc = {**entry, "created_at": now()}
        self.col.insert_one(doc)
        self._log("added", [doc])
        self._bump()

    def remove(self, entry_id: str) -> bool:
        res = self.col.delete_one({"_id": entry_id})
        if res.deleted_count:
            self._log("removed", [{"_id": entry_id}])
            self._bump()
        return res.deleted_count == 1

    def _log(self, action: str, entries: list[Doc]) -> None:
        """The change feed scanners apply to their in-memory indexes (no rebuild per change)."""
        self.changes.insert_one({"action": action, "entries": entries, "at": now()})

    def changes_since(self, since: datetime) -> list[Doc]:
        return list(self.changes.find({"at": {"$gte": since}}).sort("at", ASCENDING))

    def entries(self, signal_type: str | None = None) -> list[Doc]:
        query: dict[str, Any] = {} if signal_type is None else {"signal_type": signal_type}
        return list(self.col.find(query).sort("created_at", ASCENDING))

    def add_many(self, entries: list[Doc]) -> None:
        """One batch, one generation bump. Entries keep their list order on ``entries_in``.
        If the batch fails part-way, what it did insert is deleted again before re-raising."""
        if not entries:
            return
        from uuid import uuid4  # local: this module's imports are shared with other repos

        batch = uuid4().hex
        t = now()
        docs = [{**e, "created_at": t, "batch": batch, "seq": i} for i, e in enumerate(entries)]
        try:
            self.col.insert_many(docs, ordered=True)
        except Exception:
            self.col.delete_many({"batch": batch})
            raise
        else:
            self._log("added", docs)
        finally:
            self._bump()

    def entries_in(self, bank: str) -> list[Doc]:
        """Entries of one bank, oldest first (a batch in its own order)."""
        docs = list(self.col.find({"bank": bank}))
        docs.sort(key=lambda d: (d["created_at"], d.get("seq", 0), str(d["_id"])))
        return docs

    def counts(self, bank: str, signal_types: list[str]) -> dict[str, int]:
        return {t: self.col.count_documents({"bank": bank, "signal_type": t}) for t in signal_types}

    def settings(self, bank: str) -> Doc | None:
        return self.bank_settings.find_one({"_id": bank})

    def put_settings(self, bank: str, values: Doc) -> None:
        self.bank_settings.update_one(
            {"_id": bank}, {"$set": {**values, "bank": bank, "updated_at": now()}}, upsert=True
        )
        self._log("settings", [])
        self._bump()

    def all_settings(self) -> list[Doc]:
        return list(self.bank_settings.find())

    def generation(self) -> int:
        doc = self.meta.find_one({"_id": "generation"})
        return int(doc["value"]) if doc else 0

    def _bump(self) -> None:
        self.meta.update_one({"_id": "generation"}, {"$inc": {"value": 1}}, upsert=True)


class LinkRepo:
    """Share links, keyed by the hash of their token. The token itself is never stored."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["links"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("image_id", ASCENDING)])
        self.col.create_index([("link_id", ASCENDING)], unique=True)

    def insert(self, doc: Doc) -> None:
        self.col.insert_one({**doc, "views": 0, "remaining": doc["max_views"], "created_at": now()})

    def get(self, token_hash: str) -> Doc | None:
        return self.col.find_one({"_id": token_hash})

    def redeem(self, token_hash: str) -> bool:
        """Consume one view atomically: one conditional update, no read-modify-write."""
        res = self.col.update_one(
            {
                "_id": token_hash,
                "revoked": {"$ne": True},
                "expires_at": {"$gt": now()},
                "remaining": {"$gt": 0},
            },
            {"$inc": {"views": 1, "remaining": -1}, "$set": {"last_view_at": now()}},
        )
        return res.modified_count == 1


class AuditRepo:
    """Who did what, when and why: every moderation decision and every evidence access."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["audit"]

    def record(self, action: str, actor: str, target: str, reason: str, **data: Any) -> None:
        self.col.insert_one(
            {
                "action": action,
                "actor": actor,
                "target": target,
                "reason": reason,
                "at": now(),
                **data,
            }
        )

    def for_target(self, target: str) -> list[Doc]:
        return list(self.col.find({"target": target}).sort("at", ASCENDING))


class ReportRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["reports"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("state", ASCENDING), ("created_at", ASCENDING)])

    def insert(self, doc: Doc) -> None:
        self.col.insert_one({**doc, "state": "open", "created_at": now()})

    def open_reports(self, limit: int = 200) -> list[Doc]:
        return list(self.col.find({"state": "open"}).sort("created_at", ASCENDING).limit(limit))
