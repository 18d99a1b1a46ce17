"""Blocked images are not deleted: their bytes move to the evidence vault (a separate GridFS
bucket, readable only through the review console, every access audited, purged after the
retention period). They are never served: links decide from the status, and no servable blob
is left behind."""

from __future__ import annotations

import logging
from datetime import timedelta

from services.shared.mongo import BlobStore, Doc
from services.shared.repos import ImageRepo, now

log = logging.getLogger(__name__)


def quarantine(
    doc: Doc, *, images: ImageRepo, blobs: BlobStore, vault: BlobStore, retention_days: float
) -> bool:
    """Move a blocked image's bytes (and thumbnail) to the vault. Idempotent: an image already
    quarantined is left alone; a crash half-way is finished on redelivery."""
    if doc.get("evidence") or not doc.get("blob_id"):
        return False
    blob_id, thumb_id = str(doc["blob_id"]), doc.get("thumb_blob_id")
    evidence: Doc = {
        "blob_id": vault.put(blobs.get(blob_id), str(doc["content_type"])),
        "thumb_blob_id": (
            vault.put(blobs.get(str(thumb_id)), str(doc.get("thumb_content_type", "image/jpeg")))
            if thumb_id
            else None
        ),
        "content_type": doc["content_type"],
        "stored_at": now(),
        "expires_at": now() + timedelta(days=retention_days),
        "purged_at": None,
    }
    if not images.set_evidence(str(doc["_id"]), evidence):
        return False
    blobs.delete(blob_id)
    if thumb_id:
        blobs.delete(str(thumb_id))
    log.info("blocked image moved to the evidence vault", extra={"image_id": doc["_id"]})
    return True
