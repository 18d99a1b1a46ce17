"""The evidence vault, from the moderators' side: read a blocked image's bytes (a reason is
required and every access is audited), and purge evidence past its retention."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.shared.errors import DomainError, NotFound
from services.shared.mongo import BlobStore
from services.shared.repos import AuditRepo, ImageRepo

log = logging.getLogger(__name__)

CONSOLE_ACTOR = "console"  # until reviewer accounts exist, the loopback console is the actor
MIN_REASON = 3


@dataclass(frozen=True)
class Evidence:
    data: bytes
    content_type: str


def require_reason(reason: str) -> str:
    """The reason for looking at evidence: a few words, at most 500 characters kept."""
    reason = reason.strip()
    if len(reason) < MIN_REASON:
        raise DomainError(
            "Say why you need to see this evidence (a few words).", code="reason_required"
        )
    return reason[:500]


def read_evidence(
    *,
    images: ImageRepo,
    vault: BlobStore,
    audit: AuditRepo,
    image_id: str,
    reason: str,
    actor: str = CONSOLE_ACTOR,
) -> Evidence:
    reason = require_reason(reason)
    doc = images.get(image_id)
    evidence = (doc or {}).get("evidence") or {}
    if not evidence or evidence.get("purged_at"):
        raise NotFound("No evidence is held for this image.", code="evidence_not_found")
    audit.record("evidence.view", actor, image_id, reason)
    return Evidence(vault.get(str(evidence["blob_id"])), str(evidence["content_type"]))


def purge_expired(*, images: ImageRepo, vault: BlobStore, audit: AuditRepo) -> int:
    """Delete evidence past its retention (the image document keeps the verdict, not the bytes)."""
    purged = 0
    for doc in images.evidence_due():
        evidence = doc["evidence"]
        for key in ("blob_id", "thumb_blob_id"):
            if evidence.get(key):
                try:
                    vault.delete(str(evidence[key]))
                except Exception:
                    log.warning("evidence file already gone", extra={"image_id": doc["_id"]})
        images.mark_evidence_purged(str(doc["_id"]))
        audit.record("evidence.purge", "retention", str(doc["_id"]), "retention period ended")
        purged += 1
    return purged
