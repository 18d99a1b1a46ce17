"""Who may see what, and how many times. Plain functions over repositories; fail closed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.shared.errors import Conflict, DomainError, Forbidden, Gone, NotFound
from services.shared.mongo import BlobStore
from services.shared.repos import ImageRepo, LinkRepo, now
from services.shared.status import ImageStatus, may_serve
from services.shared.tokens import new_id, new_token, same_hash, token_hash


class Removed(DomainError):
    status = 451
    code = "removed"


@dataclass(frozen=True)
class CreatedLink:
    token: str
    link_id: str
    image_id: str
    expires_at: datetime
    max_views: int


@dataclass(frozen=True)
class LinkView:
    link_id: str
    views_left: int
    expires_at: datetime


@dataclass(frozen=True)
class Served:
    data: bytes
    content_type: str
    views_left: int


_NOT_READY = {
    ImageStatus.PENDING.value: (
        "not_scanned_yet",
        "The photo is still being checked. Try again in a moment.",
    ),
    ImageStatus.REVIEW.value: ("under_review", "The photo is waiting for a moderator's decision."),
}


def create_link(
    *,
    images: ImageRepo,
    links: LinkRepo,
    salt: bytes,
    image_id: str,
    owner_token: str,
    expires_in_s: int,
    max_views: int,
) -> CreatedLink:
    doc = images.get(image_id)
    if doc is None or not same_hash(doc.get("owner_token_hash", ""), token_hash(salt, owner_token)):
        # Same answer for "no such image" and "wrong owner key": ids are not probeable.
        raise NotFound("No image matches this id and owner key.", code="image_not_found")
    status = str(doc.get("status"))
    if not may_serve(status):
        if status in _NOT_READY:
            code, message = _NOT_READY[status]
            raise Conflict(message, code=code, image_status=status)
        raise Forbidden("This photo cannot be shared.", code="image_not_available")
    token = new_token()
    created = CreatedLink(
        token=token,
        link_id=new_id(),
        image_id=image_id,
        expires_at=now() + timedelta(seconds=expires_in_s),
        max_views=max_views,
    )
    links.insert(
        {
            "_id": token_hash(salt, token),
            "link_id": created.link_id,
            "image_id": image_id,
            "expires_at": created.expires_at,
            "max_views": max_views,
        }
    )
    return created


def _live_link(links: LinkRepo, salt: bytes, token: str) -> dict[str, object]:
    link = links.get(token_hash(salt, token))
    if link is None:
        raise NotFound("This link does not exist.", code="link_not_found")
    return link


def _gone_reason(link: dict[str, object]) -> Gone:
    if link.get("revoked"):
        return Gone("This link was revoked by its owner.", code="revoked")
    expires_at = link["expires_at"]
    if isinstance(expires_at, datetime) and expires_at <= now():
        return Gone("This link has expired.", code="expired")
    return Gone("This link has been used up.", code="used_up")


def _check_image(images: ImageRepo, image_id: str) -> dict[str, object]:
    doc = images.get(image_id)
    if doc is None or not may_serve(str(doc.get("status"))):
        raise Removed("This photo is no longer available.")
    return doc


def describe(*, images: ImageRepo, links: LinkRepo, salt: bytes, token: str) -> LinkView:
    """What the share page says. Counts nothing and reads no image bytes."""
    link = _live_link(links, salt, token)
    _check_image(images, str(link["image_id"]))
    remaining = int(str(link.get("remaining", 0)))
    expires_at = link["expires_at"]
    assert isinstance(expires_at, datetime)
    if link.get("revoked") or remaining <= 0 or expires_at <= now():
        raise _gone_reason(link)
    return LinkView(link_id=str(link["link_id"]), views_left=remaining, expires_at=expires_at)


def reveal(
    *, images: ImageRepo, links: LinkRepo, blobs: BlobStore, salt: bytes, token: str
) -> Served:
    """Redeem one view atomically, then serve the bytes, only while the image is cleared."""
    link = _live_link(links, salt, token)
    image_id = str(link["image_id"])
    _check_image(images, image_id)  # a removed image never costs the viewer a view
    if not links.redeem(str(link["_id"])):
        raise _gone_reason(links.get(str(link["_id"])) or link)
    image = _check_image(images, image_id)  # re-check: moderation may have acted meanwhile
    data = blobs.get(str(image["blob_id"]))
    after = links.get(str(link["_id"])) or {}
    return Served(
        data=data,
        content_type=str(image["content_type"]),
        views_left=int(str(after.get("remaining", 0))),
    )
