"""The evidence vault, from the moderators' side: read a blocked image's bytes (a reason is
required and every access is audited), and purge evidence past its retention.

Also the retention of removed images: an image removed by moderation keeps its bytes (GridFS
bucket ``blobs``, original and thumbnail) for ``CHATPIC_REMOVED_RETENTION_DAYS`` after the
removal, so an overturned appeal can restore it; that is also the appeal window. Then
:func:`purge_removed` deletes them (files and chunks), unless an appeal of it is still open.
The image stays ``removed`` (links keep answering 451), records ``purged_at``, and the TTL index
on ``doc_expires_at`` drops its document later, like any purged image.

Races. The purge first claims the image (``purge_started_at``, one conditional update that also
requires the removal it read), then looks for an open appeal; an appeal opens its job first,
then reads the image and gives up if the claim is there. So one of the two always sees the
other. An overturn restores only an unclaimed image (``ImageRepo.restore_removed``), and its
job is open until the decision settles it, so a purge never deletes what an overturn restores.
A purge that stops half-way keeps its claim; the next pass finishes it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bson.errors import InvalidId

from services.shared import jobrepo
from services.shared.errors import DomainError, NotFound
from services.shared.mongo import BlobStore, Doc
from services.shared.repos import AuditRepo, ImageRepo, now

log = logging.getLogger(__name__)

CONSOLE_ACTOR = "console"  # until reviewer accounts exist, the loopback console is the actor
MIN_REASON = 3
# A removed image's document is dropped this long after its bytes were purged (the links
# service's CHATPIC_IMAGE_RECORD_RETENTION_S default, which review does not read).
REMOVED_RECORD_RETENTION_S = 7 * 24 * 3600.0
REMOVED_BATCH = 200


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


def _appeal_open(jobs: jobrepo.JobRepo, image_id: str) -> bool:
    """An open appeal of the image, in the appeals queue or escalated."""
    return any(j.get("kind") == jobrepo.APPEALS for j in jobs.open_for_image(image_id))


def _delete_bytes(blobs: BlobStore, doc: Doc) -> None:
    """Original and thumbnail, files and chunks. A file already gone is fine (GridFS ignores
    it); a database error propagates, leaving the claim for the next pass."""
    for key in ("blob_id", "thumb_blob_id"):
        if doc.get(key):
            try:
                blobs.delete(str(doc[key]))
            except InvalidId:
                log.warning("removed image has a malformed blob id", extra={"image_id": doc["_id"]})


def purge_removed(
    *,
    images: ImageRepo,
    jobs: jobrepo.JobRepo,
    blobs: BlobStore,
    audit: AuditRepo,
    retention: timedelta,
    at: datetime | None = None,
    record_retention_s: float = REMOVED_RECORD_RETENTION_S,
    limit: int = REMOVED_BATCH,
) -> int:
    """Delete the bytes of images removed more than ``retention`` ago, except while an appeal
    of one is open (see the module docstring). Each purge is audited; returns how many."""
    at = at or now()
    due = images.removed_due(at - retention, limit)
    # Images with an open job are not even claimed (the claim would refuse their overturn for
    # a moment); the look after the claim below is the one that counts.
    busy = jobs.open_image_ids([str(d["_id"]) for d in due]) if due else set()
    purged = 0
    for doc in due:
        image_id = str(doc["_id"])
        if image_id in busy:
            continue
        removal = doc.get("removal") or {}
        if not images.claim_removed_purge(image_id, removal["at"], at):
            continue  # overturned, or removed anew, since it was read
        if _appeal_open(jobs, image_id):
            images.release_removed_purge(image_id)  # purged once the appeal is decided
            continue
        _delete_bytes(blobs, doc)
        if not images.mark_removed_purged(image_id, at, record_retention_s):
            continue  # another pass finished it
        audit.record(
            "removed.purge",
            "retention",
            image_id,
            "appeal window ended",
            removed_at=removal["at"],
            removal_reason=removal.get("reason"),
        )
        log.info("removed image bytes deleted", extra={"image_id": image_id})
        purged += 1
    return purged
