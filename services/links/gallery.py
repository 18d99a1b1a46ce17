"""The public gallery: public links, newest first, paged by a cursor, and their thumbnails.

An entry is shown only while its link is live (not expired, used up, revoked or past its
session) and its image is ``cleared``; the statuses of a page are read in one batched query, so
an image held or removed by moderation vanishes at once. Fail closed: anything unexpected hides
the entry. The pure parts (cursor, query, visibility, age) are unit-tested without a database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gridfs.errors import NoFile

from services.links.domain import Served, check_link_and_image, is_live, lookup
from services.shared.errors import DomainError, Gone, NotFound
from services.shared.linkrepo import LinkRepo, live_filter
from services.shared.mongo import BlobStore, Doc
from services.shared.repos import ImageRepo
from services.shared.status import may_serve

PAGE_SIZE = 24
# A page reads at most this many batches of entries looking for visible ones; then it stops
# and its "Older" cursor continues from the last entry it looked at.
MAX_BATCHES = 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_OPAQUE = re.compile(r"(\d{1,15})-([0-9a-f]{1,64})")


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: entries listed before ``listed_at``, or at that same millisecond
    with a smaller ``public_id`` (empty: strictly before ``listed_at``)."""

    listed_at: datetime
    public_id: str = ""

    def encode(self) -> str:
        ms = (self.listed_at.astimezone(UTC) - _EPOCH) // _MS
        return f"{ms}-{self.public_id}" if self.public_id else str(ms)


@dataclass(frozen=True)
class Card:
    public_id: str
    category: str
    listed_at: datetime
    expires_at: datetime
    views_left: int
    age: str  # "3 min ago"


@dataclass(frozen=True)
class GalleryPage:
    cards: list[Card]
    older: str | None  # the cursor of the next, older page (None: nothing older)


def bad_cursor() -> DomainError:
    return DomainError(
        "The 'before' cursor is not one this gallery gave out, nor a date and time.",
        code="invalid_cursor",
    )


def parse_cursor(text: str | None) -> Cursor | None:
    """``before``: the opaque cursor of an "Older" link (``<ms>-<public id>``), milliseconds
    since the epoch, or an ISO 8601 date and time (no zone = UTC). Empty = the newest page."""
    value = (text or "").strip().replace(" ", "+")  # an unencoded "+" arrives as a space
    if not value:
        return None
    if len(value) > 100:
        raise bad_cursor()
    opaque = _OPAQUE.fullmatch(value)
    try:
        if opaque:
            return Cursor(_EPOCH + int(opaque.group(1)) * _MS, opaque.group(2))
        if value.isdigit():
            return Cursor(_EPOCH + int(value) * _MS)
        when = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise bad_cursor() from None
    return Cursor(when if when.tzinfo else when.replace(tzinfo=UTC))


def listing_query(category: str | None, before: Cursor | None, at: datetime) -> dict[str, Any]:
    """Live public links (one category, or all), older than ``before``. Image statuses are
    checked afterwards, per page, by :func:`visible`."""
    query: dict[str, Any] = {**live_filter(at), "gallery.listed_at": {"$exists": True}}
    if category is not None:
        query["gallery.category"] = category
    if before is not None and before.public_id:
        query["$or"] = [
            {"gallery.listed_at": {"$lt": before.listed_at}},
            {"gallery.listed_at": before.listed_at, "gallery.public_id": {"$lt": before.public_id}},
        ]
    elif before is not None:
        query["gallery.listed_at"] = {"$lt": before.listed_at}
    return query


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def visible(link: Doc, statuses: dict[str, str], at: datetime) -> bool:
    """May this entry be listed now? A live link with a gallery entry and no password, whose
    image is ``cleared`` (an image missing from ``statuses`` is not)."""
    gallery = link.get("gallery")
    if not isinstance(gallery, dict) or not gallery.get("public_id"):
        return False
    if link.get("password_hash"):
        return False
    live = {**link, "expires_at": _utc(link["expires_at"])}
    if link.get("alive_until") is not None:
        live["alive_until"] = _utc(link["alive_until"])
    return is_live(live, at) and may_serve(statuses.get(str(link.get("image_id"))))


def age_text(listed_at: datetime, at: datetime) -> str:
    seconds = max(0, int((at - _utc(listed_at)).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def cursor_of(link: Doc) -> Cursor:
    return Cursor(_utc(link["gallery"]["listed_at"]), str(link["gallery"]["public_id"]))


def card(link: Doc, at: datetime) -> Card:
    g = link["gallery"]
    return Card(
        public_id=str(g["public_id"]),
        category=str(g["category"]),
        listed_at=_utc(g["listed_at"]),
        expires_at=_utc(link["expires_at"]),
        views_left=int(link.get("remaining", 0)),
        age=age_text(g["listed_at"], at),
    )


def list_page(
    *,
    images: ImageRepo,
    links: LinkRepo,
    category: str | None,
    before: Cursor | None,
    at: datetime,
    page_size: int = PAGE_SIZE,
    max_batches: int = MAX_BATCHES,
) -> GalleryPage:
    """One page of the gallery, newest first. Entries are read ``page_size + 1`` at a time (the
    extra one says whether anything is older); each batch's image statuses in one query."""
    shown: list[Card] = []
    cursor = before
    for _ in range(max_batches):
        batch = links.gallery_batch(listing_query(category, cursor, at), page_size + 1)
        statuses = images.statuses([str(d["image_id"]) for d in batch]) if batch else {}
        for link in batch:
            if len(shown) == page_size:  # full, and something older exists
                return GalleryPage(shown, Cursor(shown[-1].listed_at, shown[-1].public_id).encode())
            cursor = cursor_of(link)
            if visible(link, statuses, at):
                shown.append(card(link, at))
        if len(batch) <= page_size:
            return GalleryPage(shown, None)
    return GalleryPage(shown, cursor.encode() if cursor is not None else None)


def entry_image_id(links: LinkRepo, public_id: str) -> str:
    """The image behind a gallery entry (live or ended: what people saw may be reported)."""
    link = links.by_public_id(public_id) if len(public_id) <= 64 else None
    if link is None:
        raise NotFound("No gallery entry has this id.", code="entry_not_found")
    return str(link["image_id"])


def thumbnail(
    *, images: ImageRepo, links: LinkRepo, blobs: BlobStore, salt: bytes, public_id: str
) -> Served:
    """A listed entry's still thumbnail: only while its link is live and its image cleared
    (the same checks, and the same reads for an unknown id, as a reveal). Counts no view."""
    link, found = lookup(images, links, salt, "", public_id)
    image = check_link_and_image(link, found)
    if link.get("password_hash"):  # never listed; a password protects even the thumbnail
        raise NotFound("No gallery entry has this id.", code="entry_not_found")
    thumb = image.get("thumb_blob_id")
    if not thumb:
        raise NotFound("This photo has no thumbnail.", code="no_thumbnail")
    try:
        data = blobs.get(str(thumb))
    except NoFile as exc:  # swept in between: the photo is gone, not broken
        raise Gone("This photo has been deleted.", code="expired") from exc
    return Served(data=data, content_type=str(image.get("thumb_content_type") or "image/jpeg"))
