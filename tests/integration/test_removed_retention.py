"""Removed images on the live stack: the bytes stay through the appeal window and while an
appeal is open, then review's purge deletes them from GridFS (files and chunks); a late appeal
and an overturn of the purged image are refused with a clear 409."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId

from services.review.evidence import purge_removed
from services.shared.jobrepo import APPEALS, JobRepo
from services.shared.mongo import BlobStore
from services.shared.repos import AuditRepo, ImageRepo
from services.shared.settings import CommonSettings
from tests.integration.links_helpers import cleared_upload, unique_photo
from tests.integration.test_review_queues import decide, decided, take
from tests.live import Live

WINDOW = timedelta(days=CommonSettings().removed_retention_days)  # the stack's default


def stored(live: Live, blob_ids: list[ObjectId]) -> tuple[int, int]:
    """(files, chunks) of these blobs still in the ``blobs`` bucket."""
    query = {"$in": blob_ids}
    files = live.db["blobs.files"].count_documents({"_id": query})
    return files, live.db["blobs.chunks"].count_documents({"files_id": query})


def purge(live: Live) -> int:
    """One pass, as review's evidence sweeper runs it (which may also get there first)."""
    return purge_removed(
        images=ImageRepo(live.db),
        jobs=JobRepo(live.db),
        blobs=BlobStore(live.db),
        audit=AuditRepo(live.db),
        retention=WINDOW,
    )


def test_removed_image_bytes_are_purged_after_the_appeal_window(live: Live) -> None:
    image_id, owner = cleared_upload(live, unique_photo(90_317))
    doc = live.db.images.find_one({"_id": image_id})
    blob_ids = [ObjectId(doc["blob_id"]), ObjectId(doc["thumb_blob_id"])]
    files, chunks = stored(live, blob_ids)
    assert files == 2 and chunks >= 2
    assert ImageRepo(live.db).take_down(image_id, {"reason": "review:spam", "by": "test"})
    appeal = {"image_id": image_id, "owner_token": owner, "message": "It is a cake."}
    filed = live.links.post("/api/v1/appeals", json=appeal)
    assert filed.status_code == 201, filed.text

    # The window passes while the appeal waits: move the removal back in MongoDB.
    removed_at = live.db.images.find_one({"_id": image_id})["removal"]["at"]
    aged = removed_at - WINDOW - timedelta(days=1)
    live.db.images.update_one({"_id": image_id}, {"$set": {"removal.at": aged}})
    purge(live)
    assert stored(live, blob_ids) == (files, chunks)  # the open appeal holds them
    held = live.db.images.find_one({"_id": image_id})
    assert held.get("purged_at") is None and held.get("purge_started_at") is None
    assert held["blob_id"] and held["thumb_blob_id"]

    job_id = filed.json()["appeal_id"]
    take(live.review, job_id)
    decided(live.review, job_id, "uphold", "spam")
    purge(live)
    assert stored(live, blob_ids) == (0, 0)
    doc = live.db.images.find_one({"_id": image_id})
    assert doc["status"] == "removed" and doc["purge_reason"] == "removed_retention"
    assert doc["blob_id"] is None and doc["thumb_blob_id"] is None
    assert doc["doc_expires_at"] > doc["purged_at"]  # the links TTL index drops it later
    assert live.db.audit.count_documents({"target": image_id, "action": "removed.purge"}) == 1

    late = live.links.post("/api/v1/appeals", json=appeal)
    assert late.status_code == 409 and late.json()["code"] == "appeal_window_closed", late.text

    # An appeal job that slipped in anyway (opened by hand here) cannot restore a photo
    # without bytes; upholding it still works.
    stray = JobRepo(live.db).open_job(APPEALS, image_id, {"appeal": {"message": "again"}})
    assert stray is not None
    take(live.review, stray)
    refused = decide(live.review, stray, "overturn", "no_violation")
    assert refused.status_code == 409 and refused.json()["code"] == "image_purged", refused.text
    assert live.db.images.find_one({"_id": image_id})["status"] == "removed"
    decided(live.review, stray, "uphold", "spam")
