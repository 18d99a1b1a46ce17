"""Mongo repositories. Writes that race use one conditional update_one (never find_one_and_update,
which scans the whole collection on the local database), then find_one if the document is needed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from services.shared.mongo import Doc
from services.shared.status import ImageStatus
from services.shared.tokens import same_hash


def now() -> datetime:
    return datetime.now(UTC)


class ImageRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["images"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("status", ASCENDING), ("publish.last_at", ASCENDING)])
        self.col.create_index([("status", ASCENDING), ("purge_check_at", ASCENDING)])
        # The oldest image of a status (the pending backlog's age, the held queue's order).
        self.col.create_index([("status", ASCENDING), ("created_at", ASCENDING)])

    def insert_pending(self, doc: Doc) -> None:
        doc = {**doc, "status": ImageStatus.PENDING.value, "created_at": now()}
        # attempts: acknowledged publishes; failures: publishes the broker did not take.
        doc.setdefault(
            "publish", {"attempts": 0, "failures": 0, "last_at": None, "published_at": None}
        )
        self.col.insert_one(doc)

    def get(self, image_id: str) -> Doc | None:
        return self.col.find_one({"_id": image_id})

    def get_owned(self, image_id: str, owner_token_hash: str) -> Doc | None:
        """The image, if ``owner_token_hash`` is its owner's (constant-time comparison). None
        alike for no such image and for a wrong key, so image ids cannot be probed."""
        doc = self.get(image_id) if 0 < len(image_id) <= 64 else None
        stored = str(doc.get("owner_token_hash", "")) if doc else "-"
        return doc if doc is not None and same_hash(stored, owner_token_hash) else None

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

    def hide(self, image_id: str, hidden_by: str) -> bool:
        """Cleared → held for review at once (links answer 451 until a reviewer decides).
        ``purge_gen`` moves so a sweep that read the image before loses its race."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.CLEARED.value},
            {
                "$set": {
                    "status": ImageStatus.REVIEW.value,
                    "hidden_by": hidden_by,
                    "hidden_at": now(),
                },
                "$inc": {"purge_gen": 1},
            },
        )
        return res.modified_count == 1

    def clear(self, image_id: str, from_status: ImageStatus, decision: Doc) -> bool:
        """A reviewer's clearance (held → cleared, or an overturned removal → cleared), once.
        ``cleared_at`` starts the sweeper's unlinked timer; the sweeper looks again at once."""
        t = now()
        res = self.col.update_one(
            {"_id": image_id, "status": from_status.value},
            {
                "$set": {
                    "status": ImageStatus.CLEARED.value,
                    "cleared_at": t,
                    "purge_check_at": t,
                    "clearance": {**decision, "at": t, "from": from_status.value},
                },
                "$unset": {"hidden_by": "", "links_ended_at": ""},
                "$inc": {"purge_gen": 1},
            },
        )
        return res.modified_count == 1

    def statuses(self, image_ids: list[str]) -> dict[str, str]:
        found = self.col.find({"_id": {"$in": image_ids}}, {"status": 1})
        return {str(d["_id"]): str(d.get("status")) for d in found}

    def mark_deleted(self, image_id: str, deletable: list[str]) -> bool:
        """Owner deletion: from one of ``deletable`` statuses → deleted, once; the sweeper then
        deletes the bytes (checking again at once)."""
        t = now()
        res = self.col.update_one(
            {"_id": image_id, "status": {"$in": deletable}},
            {"$set": {"status": ImageStatus.DELETED.value, "deleted_at": t, "purge_check_at": t}},
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

    def evidence_held(self, limit: int, skip: int = 0) -> list[Doc]:
        """Blocked images whose evidence is still in the vault, newest first."""
        query = {
            "status": ImageStatus.BLOCKED.value,
            "evidence.blob_id": {"$ne": None},
            "evidence.purged_at": None,
        }
        cursor = self.col.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        return list(cursor.skip(skip).limit(limit))

    def count_pending(self) -> int:
        """Images waiting for a verdict (index on status: reads only the pending ones)."""
        return self.col.count_documents({"status": ImageStatus.PENDING.value})

    def count_unannounced(self) -> int:
        """Pending images whose image.uploaded no broker has acknowledged yet."""
        return self.col.count_documents(
            {"status": ImageStatus.PENDING.value, "publish.published_at": None}
        )

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

    # Ephemerality. ``purge_gen`` moves whenever a link or a ticket may have changed what keeps
    # the bytes alive; the sweeper purges only if it is still the value it read (no lost race).

    def note_link(self, image_id: str, alive_until: datetime) -> bool:
        """Call after inserting a link: the sweeper looks again by the link's end at the latest
        (``$min``: an earlier look only defers again, while a later one, such as an unlinked
        image's deadline, would keep the bytes past the link's end). False if the image is no
        longer cleared (the new link will never serve)."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.CLEARED.value},
            {
                "$min": {"purge_check_at": alive_until},
                "$inc": {"purge_gen": 1},
                "$set": {"linked_at": now()},
            },
        )
        return res.modified_count == 1

    def keep_for(self, image_id: str, until: datetime) -> bool:
        """Something other than a link (a room message) keeps the bytes until ``until``
        (``$max``: holders only ever lengthen it). The sweeper looks again by then at the
        latest, and purges with reason ``kept_ended`` once nothing keeps the image. False if
        the image is not cleared."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.CLEARED.value},
            {
                "$max": {"kept_until": until},
                "$min": {"purge_check_at": until},
                "$inc": {"purge_gen": 1},
                "$set": {"linked_at": now()},
            },
        )
        return res.modified_count == 1

    def release_keep(self, image_id: str) -> bool:
        """The holder ended early (room closed, message removed): no longer kept; the
        sweeper looks again at once (links may still keep it)."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.CLEARED.value},
            {
                "$set": {"kept_until": now(), "purge_check_at": now()},
                "$inc": {"purge_gen": 1},
            },
        )
        return res.modified_count == 1

    def touch_purge_check(self, image_id: str) -> bool:
        """A link ended early (last view spent, revoked): the sweeper looks again at once."""
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.CLEARED.value},
            {"$set": {"purge_check_at": now()}, "$inc": {"purge_gen": 1}},
        )
        return res.modified_count == 1

    def due_for_purge_check(self, at: datetime, limit: int) -> list[Doc]:
        """Cleared images whose next look by the sweeper is due or was never scheduled."""
        query = {
            "status": ImageStatus.CLEARED.value,
            "purged_at": None,
            "$or": [{"purge_check_at": None}, {"purge_check_at": {"$lte": at}}],
        }
        return list(self.col.find(query).sort("purge_check_at", ASCENDING).limit(limit))

    def unpurged(self, limit: int) -> list[Doc]:
        """Deleted by the owner, or expired by a purge that stopped half-way: bytes still due."""
        statuses = [ImageStatus.EXPIRED.value, ImageStatus.DELETED.value]
        return list(self.col.find({"status": {"$in": statuses}, "purged_at": None}).limit(limit))

    def defer_purge_check(self, image_id: str, purge_gen: int | None, until: datetime) -> bool:
        res = self.col.update_one(
            {"_id": image_id, "status": ImageStatus.CLEARED.value, "purge_gen": purge_gen},
            {"$set": {"purge_check_at": until}},
        )
        return res.modified_count == 1

    def start_purge(self, image_id: str, purge_gen: int | None, reason: str, at: datetime) -> bool:
        """Cleared → expired, unless a link, a ticket or moderation changed the image since
        ``purge_gen`` was read. From here on nothing may serve it; the bytes go next."""
        res = self.col.update_one(
            {
                "_id": image_id,
                "status": ImageStatus.CLEARED.value,
                "purged_at": None,
                "purge_gen": purge_gen,
            },
            {
                "$set": {
                    "status": ImageStatus.EXPIRED.value,
                    "purge_reason": reason,
                    "expired_at": at,
                }
            },
        )
        return res.modified_count == 1

    def mark_purged(self, image_id: str, reason: str, at: datetime, retention_s: float) -> bool:
        """The bytes are gone: drop the blob ids; the TTL index drops the document later."""
        statuses = [ImageStatus.EXPIRED.value, ImageStatus.DELETED.value]
        res = self.col.update_one(
            {"_id": image_id, "status": {"$in": statuses}, "purged_at": None},
            {
                "$set": {
                    "purged_at": at,
                    "purge_reason": reason,
                    "blob_id": None,
                    "thumb_blob_id": None,
                    "doc_expires_at": at + timedelta(seconds=retention_s),
                }
            },
        )
        return res.modified_count == 1

    # Removed images keep their bytes for the appeal window (an overturn restores them), then
    # review purges them. ``purge_started_at`` is the claim: once set, no overturn restores the
    # image (``restore_removed``) and no appeal is taken; it stays removed (links answer 451).

    def removed_due(self, removed_before: datetime, limit: int) -> list[Doc]:
        """Removed images, removed before ``removed_before``, whose bytes are not purged yet
        (a purge that stopped half-way included), oldest removal first."""
        query = {
            "status": ImageStatus.REMOVED.value,
            "purged_at": None,
            "removal.at": {"$lt": removed_before},
        }
        return list(self.col.find(query).sort("removal.at", ASCENDING).limit(limit))

    def claim_removed_purge(self, image_id: str, removed_at: datetime, at: datetime) -> bool:
        """Start purging: only if the image is still removed by the removal read
        (``removed_at``) and not purged. Already claimed counts (a stopped purge resumes)."""
        res = self.col.update_one(
            {
                "_id": image_id,
                "status": ImageStatus.REMOVED.value,
                "purged_at": None,
                "removal.at": removed_at,
            },
            {"$min": {"purge_started_at": at}},
        )
        return res.matched_count == 1

    def release_removed_purge(self, image_id: str) -> bool:
        """Give the claim back (an appeal is open): the bytes stay, an overturn may restore."""
        res = self.col.update_one(
            {"_id": image_id, "purged_at": None}, {"$unset": {"purge_started_at": ""}}
        )
        return res.modified_count == 1

    def mark_removed_purged(self, image_id: str, at: datetime, retention_s: float) -> bool:
        """The removed image's bytes are gone: drop the blob ids; the TTL index drops the
        document after ``retention_s``. Once, and only for a claimed, still removed image."""
        res = self.col.update_one(
            {
                "_id": image_id,
                "status": ImageStatus.REMOVED.value,
                "purged_at": None,
                "purge_started_at": {"$ne": None},
            },
            {
                "$set": {
                    "purged_at": at,
                    "purge_reason": "removed_retention",
                    "blob_id": None,
                    "thumb_blob_id": None,
                    "doc_expires_at": at + timedelta(seconds=retention_s),
                }
            },
        )
        return res.modified_count == 1

    def restore_removed(self, image_id: str, decision: Doc) -> bool:
        """An overturned removal → cleared (as ``clear`` does), once, and only while no purge
        of its bytes has started: an image without bytes is never restored."""
        t = now()
        res = self.col.update_one(
            {
                "_id": image_id,
                "status": ImageStatus.REMOVED.value,
                "purged_at": None,
                "purge_started_at": None,
            },
            {
                "$set": {
                    "status": ImageStatus.CLEARED.value,
                    "cleared_at": t,
                    "purge_check_at": t,
                    "clearance": {**decision, "at": t, "from": ImageStatus.REMOVED.value},
                },
                "$unset": {"hidden_by": "", "links_ended_at": ""},
                "$inc": {"purge_gen": 1},
            },
        )
        return res.modified_count == 1


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

    def get(self, entry_id: str) -> Doc | None:
        return self.col.find_one({"_id": entry_id})

    def page(self, bank: str | None, limit: int, skip: int = 0) -> list[Doc]:
        """Entries, newest first (one bank, or every bank), for the admin page."""
        query: dict[str, Any] = {} if bank is None else {"bank": bank}
        cursor = self.col.find(query).sort([("created_at", DESCENDING), ("seq", DESCENDING)])
        return list(cursor.skip(skip).limit(limit))

    def bank_names(self) -> list[str]:
        """Every bank that has entries or stored settings, by name."""
        names = {str(n) for n in self.col.distinct("bank")}
        names.update(str(d["_id"]) for d in self.bank_settings.find({}, {"_id": 1}))
        return sorted(names)

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

    def ensure_indexes(self) -> None:
        self.col.create_index([("at", DESCENDING)])

    def for_target(self, target: str) -> list[Doc]:
        return list(self.col.find({"target": target}).sort("at", ASCENDING))

    def find(self, filters: AuditFilter, limit: int, skip: int = 0) -> list[Doc]:
        """Records matching ``filters``, newest first."""
        cursor = self.col.find(filters.query()).sort([("at", DESCENDING), ("_id", DESCENDING)])
        return list(cursor.skip(skip).limit(limit))


@dataclass(frozen=True)
class AuditFilter:
    """Exact actor, action and target; ``since`` inclusive, ``until`` exclusive."""

    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def given(self) -> dict[str, Any]:
        """The filters that are set, by name (dates as ISO text)."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {k: v for k, v in values.items() if v}

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {
            k: v
            for k, v in (("actor", self.actor), ("action", self.action), ("target", self.target))
            if v
        }
        at: dict[str, datetime] = {}
        if self.since is not None:
            at["$gte"] = self.since
        if self.until is not None:
            at["$lt"] = self.until
        if at:
            query["at"] = at
        return query


class ReportRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["reports"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("state", ASCENDING), ("created_at", ASCENDING)])

    def insert(self, doc: Doc) -> None:
        self.col.insert_one({**doc, "state": "open", "created_at": now()})

    def open_reports(self, limit: int = 200) -> list[Doc]:
        return list(self.col.find({"state": "open"}).sort("created_at", ASCENDING).limit(limit))

    def for_image(self, image_id: str, limit: int = 50) -> list[Doc]:
        """The image's open reports, oldest first (reason and text; never who sent them)."""
        query = {"image_id": image_id, "state": "open"}
        fields = {"reporter": 0}
        return list(self.col.find(query, fields).sort("created_at", ASCENDING).limit(limit))

    def settle_for_image(self, image_id: str, job_id: str) -> int:
        """A reviewer decided the image: its open reports are answered by that job."""
        res = self.col.update_many(
            {"image_id": image_id, "state": "open"},
            {"$set": {"state": "decided", "job_id": job_id, "decided_at": now()}},
        )
        return res.modified_count
