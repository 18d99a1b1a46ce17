"""Removed images keep their bytes for the appeal window only (CHATPIC_REMOVED_RETENTION_DAYS):
then review purges them, GridFS files and chunks, except while an appeal of the image is open.
A late appeal gets 409 appeal_window_closed; an overturn of a purged image 409 image_purged."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from bson import ObjectId
from gridfs.errors import NoFile

from services.links.appeal_routes import file_appeal
from services.review import decisions, evidence, jobs
from services.shared import jobrepo
from services.shared.errors import Conflict, DomainError
from services.shared.jobrepo import JobRepo
from services.shared.kafka import MemoryPublisher
from services.shared.mongo import BlobStore
from services.shared.repos import AuditRepo, ImageRepo, now
from services.shared.tokens import token_hash
from tests.unit.test_review_jobs import (
    ADMIN,
    ALICE,
    SETTINGS,
    FakeImages,
    FakeJobs,
    Recorder,
    World,
    leased,
)

Doc = dict[str, Any]
SALT = b"unit-test-salt"
OWNER = "owner-token"
RETENTION = timedelta(seconds=2)  # the appeal window, short


class Images(FakeImages):
    """ImageRepo's removed-image retention in memory, with the conditions of its updates."""

    def get_owned(self, image_id: str, owner_token_hash: str) -> Doc | None:
        doc = self.get(image_id)
        return doc if doc and doc.get("owner_token_hash") == owner_token_hash else None

    def removed_due(self, removed_before: datetime, limit: int) -> list[Doc]:
        found = [
            d
            for d in self.docs.values()
            if d["status"] == "removed"
            and d.get("purged_at") is None
            and d["removal"]["at"] < removed_before
        ]
        found.sort(key=lambda d: d["removal"]["at"])
        return copy.deepcopy(found[:limit])

    def claim_removed_purge(self, image_id: str, removed_at: datetime, at: datetime) -> bool:
        d = self.docs[image_id]
        if d["status"] != "removed" or d.get("purged_at") or d["removal"]["at"] != removed_at:
            return False
        d["purge_started_at"] = min(d.get("purge_started_at") or at, at)
        return True

    def release_removed_purge(self, image_id: str) -> bool:
        d = self.docs[image_id]
        return d.get("purged_at") is None and d.pop("purge_started_at", None) is not None

    def mark_removed_purged(self, image_id: str, at: datetime, retention_s: float) -> bool:
        d = self.docs[image_id]
        if d["status"] != "removed" or d.get("purged_at") or not d.get("purge_started_at"):
            return False
        d.update(
            purged_at=at,
            purge_reason="removed_retention",
            blob_id=None,
            thumb_blob_id=None,
            doc_expires_at=at + timedelta(seconds=retention_s),
        )
        return True


class Jobs(FakeJobs):
    def settled_since(self, kind: str, image_id: str, since: datetime) -> bool:
        return any(
            d["kind"] == kind
            and d["image_id"] == image_id
            and d["state"] == jobrepo.DECIDED
            and d["created_at"] >= since
            for d in self.docs.values()
        )


class Blobs:
    """A GridFS bucket in memory: one files document and its chunks per blob."""

    CHUNK = 4

    def __init__(self) -> None:
        self.files: dict[str, Doc] = {}
        self.chunks: list[Doc] = []

    def put(self, data: bytes, content_type: str) -> str:
        file_id = str(ObjectId())
        self.files[file_id] = {"length": len(data), "contentType": content_type}
        for n, start in enumerate(range(0, len(data), self.CHUNK)):
            self.chunks.append({"files_id": file_id, "n": n, "data": data[start : start + 4]})
        return file_id

    def get(self, blob_id: str) -> bytes:
        if blob_id not in self.files:
            raise NoFile(blob_id)
        return b"".join(c["data"] for c in self.chunks if c["files_id"] == blob_id)

    def delete(self, blob_id: str) -> None:
        ObjectId(blob_id)  # a malformed id raises InvalidId, as in the real store
        self.files.pop(blob_id, None)
        self.chunks = [c for c in self.chunks if c["files_id"] != blob_id]

    def held(self, blob_id: str) -> tuple[int, int]:
        """(files, chunks) still stored for the blob."""
        return int(blob_id in self.files), sum(c["files_id"] == blob_id for c in self.chunks)

    def intact(self, blob_ids: list[str]) -> bool:
        return all(self.held(b)[0] == 1 and self.held(b)[1] > 0 for b in blob_ids)

    def gone(self, blob_ids: list[str]) -> bool:
        return all(self.held(b) == (0, 0) for b in blob_ids)


class Case:
    def __init__(self) -> None:
        self.w = World(Jobs(), Images(), Recorder(), MemoryPublisher())
        self.blobs = Blobs()

    @property
    def images(self) -> Images:
        return cast(Images, self.w.images)

    def removed(self, image_id: str, ago_s: float) -> list[str]:
        """A removed image with its original and thumbnail; returns their blob ids."""
        blob = self.blobs.put(b"\xff\xd8\xff original photo bytes", "image/jpeg")
        thumb = self.blobs.put(b"\xff\xd8\xff thumbnail", "image/jpeg")
        removal = {"reason": "review:spam", "by": "alice", "at": now() - timedelta(seconds=ago_s)}
        self.images.docs[image_id] = {
            "_id": image_id,
            "status": "removed",
            "owner_token_hash": token_hash(SALT, OWNER),
            "blob_id": blob,
            "thumb_blob_id": thumb,
            "removal": removal,
        }
        return [blob, thumb]

    def purge(self, at: datetime | None = None) -> int:
        return evidence.purge_removed(
            images=cast(ImageRepo, self.w.images),
            jobs=cast(JobRepo, self.w.jobs),
            blobs=cast(BlobStore, self.blobs),
            audit=cast(AuditRepo, self.w.rec),
            retention=RETENTION,
            at=at,
        )

    def appeal(self, image_id: str) -> str:
        return file_appeal(
            images=cast(ImageRepo, self.w.images),
            jobs=cast(JobRepo, self.w.jobs),
            salt=SALT,
            image_id=image_id,
            owner_token=OWNER,
            message="It is a cake.",
            window=RETENTION,
        )

    def age(self, image_id: str, by_s: float) -> None:
        """Move the removal back in time, as the integration test does in MongoDB."""
        self.images.docs[image_id]["removal"]["at"] -= timedelta(seconds=by_s)

    def purges(self) -> list[Doc]:
        return [a for a in self.w.rec.audits() if a["action"] == "removed.purge"]


def test_bytes_are_deleted_files_and_chunks_once_the_window_ends() -> None:
    c = Case()
    old = c.removed("old", ago_s=3)
    fresh = c.removed("fresh", ago_s=0.5)
    cleared = c.blobs.put(b"someone else's photo", "image/jpeg")
    c.images.docs["live"] = {"_id": "live", "status": "cleared", "blob_id": cleared}
    assert c.blobs.intact(old) and c.blobs.held(cleared) == (1, 5)

    at = now()
    assert c.purge(at) == 1
    assert c.blobs.gone(old)  # files and chunks alike
    assert c.blobs.intact(fresh) and c.blobs.held(cleared) == (1, 5)
    doc = c.images.docs["old"]
    assert doc["status"] == "removed" and doc["purged_at"] == at
    assert doc["blob_id"] is None and doc["thumb_blob_id"] is None
    assert doc["doc_expires_at"] == at + timedelta(seconds=evidence.REMOVED_RECORD_RETENTION_S)
    (audit,) = c.purges()
    assert audit["target"] == "old" and audit["actor"] == "retention"
    assert audit["removed_at"] == doc["removal"]["at"]

    assert c.purge(at) == 0 and len(c.purges()) == 1  # once
    assert c.purge(at + RETENTION) == 1  # the fresh one's window ends in turn
    assert c.blobs.gone(fresh)
    assert c.blobs.held(cleared) == (1, 5) and not c.blobs.files.keys() - {cleared}


def test_an_open_appeal_holds_the_bytes_until_it_is_decided() -> None:
    c = Case()
    blobs = c.removed("img", ago_s=0.5)
    job_id = c.appeal("img")
    c.age("img", by_s=10)  # the window ended while the appeal waits
    claims: list[str] = []
    claim = c.images.claim_removed_purge

    def counted(image_id: str, removed_at: datetime, at: datetime) -> bool:
        claims.append(image_id)
        return claim(image_id, removed_at, at)

    c.images.claim_removed_purge = counted  # type: ignore[method-assign]
    assert c.purge() == 0 and not claims  # not even claimed: its overturn is never refused
    assert c.blobs.intact(blobs) and "purge_started_at" not in c.images.docs["img"]

    c.w.jobs.docs[job_id]["queue"] = jobrepo.ESCALATED  # an escalated appeal holds them too
    assert c.purge() == 0 and c.blobs.intact(blobs)

    jobs.lease_job(c.w.ports, job_id, ADMIN, 300)
    decisions.decide(c.w.ports, SETTINGS, job_id, ADMIN, "uphold", "spam")
    assert c.purge() == 1
    assert c.blobs.gone(blobs)


def test_an_appeal_that_lands_just_before_the_claim_still_holds_the_bytes() -> None:
    """The appeal opened its job after the purge listed the open jobs, before its claim (and
    so it saw no claim): the purge looks again after claiming, and gives the claim back."""
    c = Case()
    blobs = c.removed("img", ago_s=1.9)
    claim = c.images.claim_removed_purge

    def appeal_then_claim(image_id: str, removed_at: datetime, at: datetime) -> bool:
        c.appeal(image_id)
        return claim(image_id, removed_at, at)

    c.images.claim_removed_purge = appeal_then_claim  # type: ignore[method-assign]
    assert c.purge(now() + RETENTION) == 0
    assert c.blobs.intact(blobs) and "purge_started_at" not in c.images.docs["img"]
    (job,) = c.w.jobs.docs.values()
    assert job["state"] == jobrepo.OPEN and job["kind"] == jobrepo.APPEALS


def test_an_appeal_after_the_window_or_of_a_purged_image_is_refused() -> None:
    c = Case()
    c.removed("late", ago_s=3)
    c.removed("purged", ago_s=0.5)
    c.images.docs["purged"]["purged_at"] = now()  # e.g. the window was shorter then
    c.removed("fresh", ago_s=0.5)
    closes = c.images.docs["late"]["removal"]["at"] + RETENTION
    for image_id in ("late", "purged"):
        with pytest.raises(Conflict) as refused:
            c.appeal(image_id)
        assert refused.value.code == "appeal_window_closed" and refused.value.status == 409
        assert refused.value.to_dict()["appeal_window_days"] == pytest.approx(2 / 86400)
        if image_id == "late":
            assert refused.value.data["closed_at"] == closes.isoformat()
    assert not c.w.jobs.docs  # no job was opened
    job_id = c.appeal("fresh")
    assert c.w.jobs.docs[job_id]["state"] == jobrepo.OPEN


def test_an_appeal_racing_a_purge_closes_its_job_and_is_refused() -> None:
    """The purge claimed the image after the appeal's first look but saw no open job yet."""
    c = Case()
    blobs = c.removed("img", ago_s=1.9)
    opened = c.w.jobs.open_job

    def open_then_purge_claims(kind: str, image_id: str, fields: Doc | None = None) -> Any:
        job_id = opened(kind, image_id, fields)
        c.images.docs[image_id]["purge_started_at"] = now()
        return job_id

    c.w.jobs.open_job = open_then_purge_claims  # type: ignore[method-assign]
    with pytest.raises(Conflict) as refused:
        c.appeal("img")
    assert refused.value.code == "appeal_window_closed"
    (job,) = c.w.jobs.docs.values()
    assert job["state"] == jobrepo.CLOSED and job["closed_reason"] == "appeal_window_closed"
    assert c.purge(now() + RETENTION) == 1  # nothing holds the purge now
    assert c.blobs.gone(blobs)


def test_a_purge_that_stopped_half_way_is_finished_by_the_next_pass() -> None:
    c = Case()
    blobs = c.removed("img", ago_s=3)
    deleted = c.blobs.delete

    def database_lost(blob_id: str) -> None:
        raise ConnectionError("database went away")

    c.blobs.delete = database_lost  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        c.purge()
    doc = c.images.docs["img"]
    assert doc["purge_started_at"] and doc.get("purged_at") is None and not c.purges()
    c.blobs.delete = deleted  # type: ignore[method-assign]
    assert c.purge() == 1 and len(c.purges()) == 1
    assert c.blobs.gone(blobs)


def test_an_overturn_of_a_purged_image_is_refused_and_uphold_still_works() -> None:
    c = Case()
    c.removed("img", ago_s=3)
    job_id = leased(c.w, "appeals", "img")  # opened before the purge (a race) or by hand
    c.w.jobs.docs[job_id]["state"] = jobrepo.CLOSED  # so the purge is not held by it
    assert c.purge() == 1
    c.w.jobs.docs[job_id]["state"] = jobrepo.OPEN
    with pytest.raises(DomainError) as refused:
        decisions.decide(c.w.ports, SETTINGS, job_id, ALICE, "overturn", "no_violation")
    assert refused.value.code == "image_purged" and refused.value.status == 409
    assert refused.value.to_dict()["purged_at"] == c.images.docs["img"]["purged_at"].isoformat()
    assert c.images.docs["img"]["status"] == "removed"
    job = c.w.jobs.docs[job_id]  # refused before anything changed: still open, still hers
    assert job["state"] == jobrepo.OPEN and job["lease_owner"] == "alice"
    assert ("restore_links", "img") not in c.w.rec.calls
    assert not [a for a in c.w.rec.audits() if a["action"].startswith("review.")]
    decisions.decide(c.w.ports, SETTINGS, job_id, ALICE, "uphold", "spam")
    assert c.w.jobs.docs[job_id]["state"] == jobrepo.DECIDED


def test_an_overturn_never_restores_an_image_whose_purge_started_meanwhile() -> None:
    """The reviewer's page read the image unclaimed; the purge claimed it before the restore:
    the conditional restore loses, the refusal is clear and the job is open again."""
    c = Case()
    c.removed("img", ago_s=3)
    job_id = leased(c.w, "appeals", "img")
    read = c.w.images.get
    reads: list[str] = []

    def read_then_claimed(image_id: str) -> Doc | None:
        doc = read(image_id)
        if not reads:
            c.images.docs[image_id]["purge_started_at"] = now()
        reads.append(image_id)
        return doc

    c.w.images.get = read_then_claimed  # type: ignore[method-assign]
    with pytest.raises(DomainError) as refused:
        decisions.decide(c.w.ports, SETTINGS, job_id, ALICE, "overturn", "no_violation")
    assert refused.value.code == "image_purged" and len(reads) == 2
    assert c.images.docs["img"]["status"] == "removed"
    assert c.w.jobs.docs[job_id]["state"] == jobrepo.OPEN
    assert ("restore_links", "img") not in c.w.rec.calls


def test_an_overturn_within_the_window_still_restores() -> None:
    c = Case()
    blobs = c.removed("img", ago_s=0.5)
    job_id = c.appeal("img")
    jobs.lease_job(c.w.ports, job_id, ALICE, 300)
    decisions.decide(c.w.ports, SETTINGS, job_id, ALICE, "overturn", "no_violation")
    assert c.images.docs["img"]["status"] == "cleared"
    assert c.purge(now() + RETENTION) == 0  # cleared now: not this purge's business
    assert c.blobs.intact(blobs)
