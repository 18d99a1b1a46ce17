"""Review jobs (collection ``review_jobs``): what a human must decide about one image.

Written by the public services (reports and appeals on links) and by the review service (jobs
for images the scanner held, decisions). One open job per image and kind: the open job carries
``open_key = "<kind>:<image_id>"`` under a unique index, so concurrent intakes of one image meet
in one document; a settled job's key gets its own id appended, freeing the key for a later job.

Every move is one conditional ``update_one`` (``modified_count`` says who won), never
``find_one_and_update``. A job is leased to one reviewer at a time: ``lease_owner`` and
``lease_until``; an expired lease is free again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.shared.mongo import Doc
from services.shared.repos import now
from services.shared.tokens import new_id

OPEN = "open"
DECIDED = "decided"
CLOSED = "closed"  # settled without a decision: the image went away, or another job decided it

REPORTS = "reports"
SCANNER = "scanner"
APPEALS = "appeals"
ESCALATED = "escalated"
KINDS = (REPORTS, SCANNER, APPEALS)
QUEUES = (REPORTS, SCANNER, APPEALS, ESCALATED)

DEFAULT_PRIORITY = 1  # 0 jumps the queue (minor safety reports)


def open_key(kind: str, image_id: str) -> str:
    return f"{kind}:{image_id}"


def lease_free(at: datetime) -> dict[str, Any]:
    """A job nobody holds: never leased, released, or the lease ran out."""
    return {"$or": [{"lease_until": None}, {"lease_until": {"$lte": at}}]}


def _held_by(owner: str, at: datetime) -> dict[str, Any]:
    return {"lease_owner": owner, "lease_until": {"$gt": at}}


class JobRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["review_jobs"]

    def ensure_indexes(self) -> None:
        self.col.create_index("open_key", unique=True)
        self.col.create_index(
            [
                ("queue", ASCENDING),
                ("state", ASCENDING),
                ("priority", ASCENDING),
                ("created_at", ASCENDING),
            ]
        )
        self.col.create_index([("image_id", ASCENDING), ("state", ASCENDING)])

    # --- intake ------------------------------------------------------------------------------

    def _new(self, kind: str, image_id: str, priority: int, at: datetime) -> Doc:
        return {
            "_id": new_id(),
            "kind": kind,
            "queue": kind,
            "state": OPEN,
            "image_id": image_id,
            "priority": priority,
            "created_at": at,
            "lease_owner": None,
            "lease_until": None,
        }

    def add_report(self, image_id: str, reporter: str, reason: str, priority: int) -> Doc:
        """Fold one report into the image's open reports job (made if there is none): the
        reporter's salted hash joins a set, ``reports`` counts every report filed, the lowest
        priority wins. ``reasons.<reason>`` counts distinct reporters of that reason: a
        reporter's repeat of a reason adds nothing (``reason_reporters`` holds one
        ``"<reason>:<reporter>"`` key each; the count grows only when the key is new, in one
        conditional update). Returns the job as it is now."""
        key = open_key(REPORTS, image_id)
        reason_key = f"{reason}:{reporter}"
        t = now()
        for _ in range(3):
            new = self._new(REPORTS, image_id, priority, t)
            del new["priority"]  # set by $min below, on insert too
            update = {
                "$setOnInsert": new,
                "$addToSet": {"reporters": reporter},
                "$inc": {"reports": 1},
                "$min": {"priority": priority},
                "$set": {"last_report_at": t},
            }
            try:
                self.col.update_one({"open_key": key}, update, upsert=True)
            except DuplicateKeyError:
                continue  # a concurrent first report inserted it: now it is an update
            self.col.update_one(
                {"open_key": key, "reason_reporters": {"$ne": reason_key}},
                {"$addToSet": {"reason_reporters": reason_key}, "$inc": {f"reasons.{reason}": 1}},
            )
            doc = self.col.find_one({"open_key": key})
            if doc is not None:
                return doc
            # Settled between the upsert and the read: this report is in that decided job;
            # folding it in again opens a new job for whatever the reviewer did not see.
        raise RuntimeError(f"could not file a report into a job of {image_id}")

    def open_job(self, kind: str, image_id: str, fields: Doc | None = None) -> str | None:
        """A new open job of ``kind`` for the image; None if one is already open."""
        doc = {**self._new(kind, image_id, DEFAULT_PRIORITY, now()), **(fields or {})}
        doc["open_key"] = open_key(kind, image_id)
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            return None
        return str(doc["_id"])

    def mark(self, job_id: str, fields: Doc) -> None:
        self.col.update_one({"_id": job_id}, {"$set": fields})

    # --- reading -----------------------------------------------------------------------------

    def get(self, job_id: str) -> Doc | None:
        return self.col.find_one({"_id": job_id}) if len(job_id) <= 64 else None

    def open_for_image(self, image_id: str) -> list[Doc]:
        return list(self.col.find({"image_id": image_id, "state": OPEN}))

    def open_jobs(self, limit: int) -> list[Doc]:
        fields = {"image_id": 1, "kind": 1, "queue": 1}
        return list(self.col.find({"state": OPEN}, fields).limit(limit))

    def open_image_ids(self, image_ids: list[str]) -> set[str]:
        """Which of these images already have an open job (of any kind)."""
        found = self.col.find({"image_id": {"$in": image_ids}, "state": OPEN}, {"image_id": 1})
        return {str(d["image_id"]) for d in found}

    def settled_since(self, kind: str, image_id: str, since: datetime) -> bool:
        query = {
            "kind": kind,
            "image_id": image_id,
            "state": DECIDED,
            "created_at": {"$gte": since},
        }
        return self.col.count_documents(query, limit=1) > 0

    def depth(self, queue: str) -> tuple[int, datetime | None]:
        """Open jobs in ``queue`` and when the oldest of them was made."""
        query = {"queue": queue, "state": OPEN}
        count = self.col.count_documents(query)
        oldest = self.col.find_one(query, {"created_at": 1}, sort=[("created_at", ASCENDING)])
        return count, (oldest["created_at"] if oldest else None)

    def recent(self, queue: str, limit: int) -> list[Doc]:
        """Open jobs of a queue in the order they are handed out."""
        fields = {"reporters": 0, "reason_reporters": 0}
        order = [("priority", ASCENDING), ("created_at", ASCENDING)]
        return list(self.col.find({"queue": queue, "state": OPEN}, fields).sort(order).limit(limit))

    # --- leases ------------------------------------------------------------------------------

    def candidates(self, queue: str, at: datetime, limit: int) -> list[Doc]:
        """Open, unheld jobs of a queue, first to be handed out first: (priority, age)."""
        query = {"queue": queue, "state": OPEN, **lease_free(at)}
        order = [("priority", ASCENDING), ("created_at", ASCENDING)]
        fields = {"_id": 1, "priority": 1, "created_at": 1}
        return list(self.col.find(query, fields).sort(order).limit(limit))

    def held_by(self, owner: str, queue: str, at: datetime) -> Doc | None:
        query = {"queue": queue, "state": OPEN, **_held_by(owner, at)}
        return self.col.find_one(query, sort=[("created_at", ASCENDING)])

    def lease(self, job_id: str, queue: str, owner: str, until: datetime, at: datetime) -> bool:
        """Take (or renew) the lease: only if the job is still open in ``queue`` and nobody else
        holds it now."""
        query = {
            "_id": job_id,
            "queue": queue,
            "state": OPEN,
            "$or": [{"lease_until": None}, {"lease_until": {"$lte": at}}, {"lease_owner": owner}],
        }
        res = self.col.update_one(
            query,
            {
                "$set": {"lease_owner": owner, "lease_until": until, "leased_at": at},
                "$inc": {"leases": 1},
            },
        )
        return res.modified_count == 1

    def release(self, job_id: str, owner: str) -> bool:
        res = self.col.update_one(
            {"_id": job_id, "state": OPEN, "lease_owner": owner},
            {"$set": {"lease_owner": None, "lease_until": None}},
        )
        return res.modified_count == 1

    # --- settling ----------------------------------------------------------------------------

    def _lease_query(self, job: Doc, owner: str | None, at: datetime) -> dict[str, Any]:
        """The job as read, still open; held by ``owner`` unless ``owner`` is None (admins)."""
        query: dict[str, Any] = {"_id": job["_id"], "state": OPEN, "queue": job["queue"]}
        if owner is not None:
            query.update(_held_by(owner, at))
        return query

    def settle(self, job: Doc, state: str, fields: Doc, owner: str | None, at: datetime) -> bool:
        """Open → decided/closed, once. The open key is freed for a later job of the image."""
        key = f"{job.get('open_key') or open_key(job['kind'], job['image_id'])}:{job['_id']}"
        res = self.col.update_one(
            self._lease_query(job, owner, at),
            {
                "$set": {
                    **fields,
                    "state": state,
                    "open_key": key,
                    "settled_at": at,
                    "lease_owner": None,
                    "lease_until": None,
                }
            },
        )
        return res.modified_count == 1

    def reopen(self, job: Doc) -> bool:
        """Undo a settle whose effects failed. If a new job of the image took the open key
        meanwhile, this one is closed instead: the new job brings the image back anyway."""
        key = job.get("open_key") or open_key(job["kind"], job["image_id"])
        try:
            res = self.col.update_one(
                {"_id": job["_id"], "state": {"$ne": OPEN}},
                {"$set": {"state": OPEN, "open_key": key, "decision": None, "settled_at": None}},
            )
        except DuplicateKeyError:
            self.col.update_one(
                {"_id": job["_id"]},
                {"$set": {"state": CLOSED, "closed_reason": "superseded", "decision": None}},
            )
            return False
        return res.modified_count == 1

    def escalate(self, job: Doc, escalation: Doc, owner: str | None, at: datetime) -> bool:
        """Move an open job to the admins' queue (it stays open; its lease ends). The caller
        checks it is not there already."""
        res = self.col.update_one(
            self._lease_query(job, owner, at),
            {
                "$set": {
                    "queue": ESCALATED,
                    "escalation": escalation,
                    "lease_owner": None,
                    "lease_until": None,
                }
            },
        )
        return res.modified_count == 1

    def close(self, job: Doc, reason: str) -> bool:
        """Settle without a decision (someone decided the image in another job, or it is gone)."""
        return self.settle(job, CLOSED, {"closed_reason": reason}, None, now())
