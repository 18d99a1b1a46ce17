"""Ephemerality: once nothing may show an image any more, its bytes are deleted, not hidden.

An image's bytes (original and thumbnail, GridFS bucket ``blobs``) are deleted when:

- the owner deleted it (status ``deleted``);
- every link to it has ended (used up, expired, revoked, session over) and no reveal ticket is
  still waiting to be fetched: ``cleared`` → ``expired``, reason ``links_ended``;
- it was cleared but got no link within ``unlinked_ttl_s``: ``cleared`` → ``expired``,
  reason ``unlinked``.

Held, blocked and removed images belong to moderation (the evidence vault) and are never
touched here. Documents go later, by TTL indexes (:func:`ensure_ttl_indexes`).

Races. The sweeper flips ``cleared`` → ``expired`` first, with one conditional update that
also requires ``purge_gen`` to be the value it read; link creation (``ImageRepo.note_link``)
and early link ends (``ImageRepo.touch_purge_check``) move ``purge_gen``, and a moderation
takedown moves the status, so each of them wins over a sweep that read the image before.
Only then are the bytes deleted, and only then is ``purged_at`` set: a sweep that dies half-way
leaves ``expired`` (or ``deleted``) without ``purged_at``, which the next pass finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson.errors import InvalidId
from fastapi.concurrency import run_in_threadpool
from gridfs.errors import NoFile
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from services.shared.mongo import BlobStore, Doc
from services.shared.repos import ImageRepo
from services.shared.status import ImageStatus

log = logging.getLogger(__name__)

# A ticket used this recently may still be streaming its bytes to the viewer: keep them.
FETCH_GRACE_S = 30.0

# (collection, field): documents are dropped by the database once ``field`` has passed.
TTL_INDEXES = (
    ("images", "doc_expires_at"),
    ("links", "purge_at"),
    ("tickets", "expires_at"),
    ("link_viewers", "purge_at"),
    ("gallery_claims", "purge_at"),  # an image's one gallery entry, kept as long as its link
)

_LINK_FIELDS = {"revoked": 1, "remaining": 1, "alive_until": 1, "expires_at": 1}
_TICKET_FIELDS = {"used_at": 1, "expires_at": 1}


@dataclass(frozen=True)
class Purge:
    reason: str  # links_ended | unlinked | deleted


@dataclass(frozen=True)
class Defer:
    until: datetime


Decision = Purge | Defer | None  # None: not the sweeper's business (moderation, pending, done)


@dataclass(frozen=True)
class SweepResult:
    purged: int = 0
    deferred: int = 0
    raced: int = 0  # a link, ticket, takedown or another sweeper changed the image first
    failed: int = 0  # malformed documents (logged); database errors abort the pass instead
    by_reason: dict[str, int] = field(default_factory=dict)  # purged, by Purge.reason


def ensure_ttl_indexes(db: Database[Doc]) -> None:
    for collection, key in TTL_INDEXES:
        db[collection].create_index(key, expireAfterSeconds=0)


def _utc(value: Any) -> datetime | None:
    """Datetimes from a client without ``tz_aware`` come back naive, in UTC."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def link_live_until(link: Doc, now: datetime) -> datetime | None:
    """When a LIVE link stops keeping the bytes (None if it is not live): not revoked, views
    left, and ``alive_until`` (never later than ``expires_at``) still ahead."""
    if link.get("revoked") or int(link.get("remaining") or 0) <= 0:
        return None
    ends = [t for t in (_utc(link.get("alive_until")), _utc(link.get("expires_at"))) if t]
    until = min(ends, default=None)
    return until if until is not None and until > now else None


def ticket_keeps_until(ticket: Doc, now: datetime, fetch_grace_s: float) -> datetime | None:
    """An unused, unexpired ticket keeps the bytes until it lapses; a ticket just used keeps
    them for ``fetch_grace_s`` while the fetch completes."""
    used_at = _utc(ticket.get("used_at"))
    until = (
        _utc(ticket.get("expires_at"))
        if used_at is None
        else used_at + timedelta(seconds=fetch_grace_s)
    )
    return until if until is not None and until > now else None


def decide(
    image: Doc,
    links: list[Doc],
    tickets: list[Doc],
    now: datetime,
    unlinked_ttl_s: float,
    *,
    fetch_grace_s: float = FETCH_GRACE_S,
) -> Decision:
    """What to do with one image's bytes now. Pure: every input is passed in.

    ``links`` and ``tickets`` are all of the image's link and ticket documents. The unlinked
    clock starts when the image was cleared: ``cleared_at`` if set (a reviewer's clearance),
    else ``scanned_at``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if image.get("purged_at") is not None:
        return None
    status = image.get("status")
    if status == ImageStatus.DELETED.value:
        return Purge("deleted")
    if status == ImageStatus.EXPIRED.value:  # flipped, but the purge stopped half-way
        return Purge(str(image.get("purge_reason") or "links_ended"))
    if status != ImageStatus.CLEARED.value:
        return None
    keep = [link_live_until(link, now) for link in links]
    keep += [ticket_keeps_until(t, now, fetch_grace_s) for t in tickets]
    kept_until = _utc(image.get("kept_until"))  # a room (not a link) holds it
    keep.append(kept_until if kept_until is not None and kept_until > now else None)
    until = max((t for t in keep if t is not None), default=None)
    if until is not None:
        return Defer(until)
    if kept_until is not None and not links:
        return Purge("kept_ended")
    if links or image.get("linked_at") is not None:
        return Purge("links_ended")
    starts = [t for t in (_utc(image.get(k)) for k in ("scanned_at", "cleared_at")) if t]
    start = max(starts, default=None) or _utc(image.get("created_at"))
    deadline = start + timedelta(seconds=unlinked_ttl_s) if start is not None else None
    if deadline is not None and deadline > now:
        return Defer(deadline)
    return Purge("unlinked")


def _delete_blob(blobs: BlobStore, blob_id: object, image_id: str) -> None:
    try:
        blobs.delete(str(blob_id))
    except NoFile:  # GridFS.delete tolerates missing files; a GridFSBucket would raise this
        pass
    except InvalidId:
        log.warning(
            "image has a malformed blob id; nothing to delete", extra={"image_id": image_id}
        )


def _delete_bytes(blobs: BlobStore, image: Doc) -> None:
    for key in ("blob_id", "thumb_blob_id"):
        if image.get(key):
            _delete_blob(blobs, image[key], str(image["_id"]))


def _sweep_image(
    image: Doc,
    *,
    images: ImageRepo,
    links_col: Collection[Doc],
    tickets_col: Collection[Doc],
    blobs: BlobStore,
    now: datetime,
    unlinked_ttl_s: float,
    doc_retention_s: float,
    fetch_grace_s: float,
) -> str:
    """One image: returns "deferred", "raced", "skipped" or the purge reason."""
    image_id = str(image["_id"])
    cleared = image.get("status") == ImageStatus.CLEARED.value
    links: list[Doc] = []
    tickets: list[Doc] = []
    if cleared:
        # Links first, then tickets: if a reveal stores its ticket before it spends the view,
        # this sweep sees the view either unspent or already held by a ticket, never neither.
        links = list(links_col.find({"image_id": image_id}, _LINK_FIELDS))
        tickets = list(tickets_col.find({"image_id": image_id}, _TICKET_FIELDS))
    decision = decide(image, links, tickets, now, unlinked_ttl_s, fetch_grace_s=fetch_grace_s)
    gen = image.get("purge_gen")
    if decision is None:
        return "skipped"
    if isinstance(decision, Defer):
        return "deferred" if images.defer_purge_check(image_id, gen, decision.until) else "raced"
    if cleared and not images.start_purge(image_id, gen, decision.reason, now):
        return "raced"
    _delete_bytes(blobs, image)
    if not images.mark_purged(image_id, decision.reason, now, doc_retention_s):
        return "raced"  # another sweeper finished it
    log.info("image bytes deleted", extra={"image_id": image_id, "reason": decision.reason})
    return decision.reason


def sweep_once(
    images: ImageRepo,
    links_col: Collection[Doc],
    tickets_col: Collection[Doc],
    blobs: BlobStore,
    now: datetime,
    unlinked_ttl_s: float,
    doc_retention_s: float,
    limit: int = 200,
    fetch_grace_s: float = FETCH_GRACE_S,
) -> SweepResult:
    """One pass: finish deleted and half-purged images, then look at the cleared images that
    are due. At most ``limit`` of each. A database error aborts the pass (the next one
    resumes); a malformed document is logged, counted in ``failed`` and skipped."""
    outcomes: dict[str, int] = {}
    phases: list[Callable[[], Iterable[Doc]]] = [
        lambda: images.unpurged(limit),
        lambda: images.due_for_purge_check(now, limit),
    ]
    for phase in phases:
        for image in phase():
            try:
                outcome = _sweep_image(
                    image,
                    images=images,
                    links_col=links_col,
                    tickets_col=tickets_col,
                    blobs=blobs,
                    now=now,
                    unlinked_ttl_s=unlinked_ttl_s,
                    doc_retention_s=doc_retention_s,
                    fetch_grace_s=fetch_grace_s,
                )
            except PyMongoError:
                raise
            except Exception:
                log.exception(
                    "sweeper skipped a malformed image", extra={"image_id": image.get("_id")}
                )
                outcome = "failed"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    counts = {k: outcomes.pop(k, 0) for k in ("deferred", "raced", "failed", "skipped")}
    return SweepResult(
        purged=sum(outcomes.values()),
        deferred=counts["deferred"],
        raced=counts["raced"],
        failed=counts["failed"],
        by_reason=outcomes,
    )


async def sweeper_loop(
    sweep: Callable[[], SweepResult],
    interval_s: float,
    *,
    on_result: Callable[[SweepResult], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Run ``sweep`` in a worker thread every ``interval_s`` until cancelled. A failing pass is
    logged (and passed to ``on_error``); the loop itself never dies of it."""
    while True:
        try:
            result = await run_in_threadpool(sweep)
            if result.purged or result.failed:
                log.info(
                    "sweep done",
                    extra={
                        "purged": result.purged,
                        "by_reason": result.by_reason,
                        "deferred": result.deferred,
                        "failed": result.failed,
                    },
                )
            if on_result is not None:
                on_result(result)
        except Exception as exc:
            log.exception("links sweep failed; will retry")
            if on_error is not None:
                with contextlib.suppress(Exception):
                    on_error(exc)
        await asyncio.sleep(interval_s)
