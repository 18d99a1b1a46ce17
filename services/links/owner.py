"""What an uploader can do with the owner token from the upload: list the image's links, revoke
one, delete the image everywhere, and keep end-of-session links alive from their open page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.links.creation import owned_image
from services.links.domain import gone_reason, is_live
from services.shared.errors import Conflict, NotFound
from services.shared.linkrepo import LinkRepo, TicketRepo
from services.shared.mongo import Doc
from services.shared.repos import ImageRepo, now
from services.shared.status import ImageStatus
from services.shared.tokens import same_hash, token_hash

# An owner may delete what nobody has judged against: pending, cleared or already expired.
# Held, blocked and removed images belong to moderation until it has decided.
DELETABLE = [ImageStatus.PENDING.value, ImageStatus.CLEARED.value, ImageStatus.EXPIRED.value]


@dataclass(frozen=True)
class LinkSummary:
    link_id: str
    state: str  # live, or the reason it ended (expired, used_up, revoked, session_ended, ...)
    created_at: datetime
    expires_at: datetime
    max_views: int
    views: int
    views_left: int
    max_views_per_viewer: int | None
    end_of_session: bool
    password: bool
    gallery_category: str | None  # listed in the public gallery under this category


def link_state(link: Doc, at: datetime, image_status: str = ImageStatus.CLEARED.value) -> str:
    """``live``, ``held`` (a live link whose photo is waiting for a moderator, e.g. hidden after
    reports: it answers 451 until then), or the reason it ended."""
    if not is_live(link, at):
        return gone_reason(link, at).code
    if image_status == ImageStatus.REVIEW.value:
        return "held"
    return "live" if image_status == ImageStatus.CLEARED.value else "removed"


def list_links(
    *, images: ImageRepo, links: LinkRepo, salt: bytes, image_id: str, owner_token: str
) -> list[LinkSummary]:
    image = owned_image(images, salt, image_id, owner_token)
    at = now()
    status = str(image.get("status"))
    return [
        LinkSummary(
            link_id=str(d["link_id"]),
            state=link_state(d, at, status),
            created_at=d["created_at"],
            expires_at=d["expires_at"],
            max_views=int(d["max_views"]),
            views=int(d.get("views", 0)),
            views_left=max(0, int(d.get("remaining", 0))),
            max_views_per_viewer=d.get("max_views_per_viewer"),
            end_of_session=bool(d.get("end_of_session")),
            password=bool(d.get("password_hash")),
            gallery_category=(d.get("gallery") or {}).get("category"),
        )
        for d in links.for_image(image_id)
    ]


def revoke_link(
    *,
    images: ImageRepo,
    links: LinkRepo,
    tickets: TicketRepo,
    salt: bytes,
    link_id: str,
    owner_token: str,
) -> bool:
    """Revoke one link, and drop its unused tickets (a view granted a moment ago fetches
    nothing). False if it had already ended by revocation (idempotent)."""
    link = links.by_link_id(link_id) if len(link_id) <= 64 else None
    image_id = str(link["image_id"]) if link else "0" * 32
    try:
        owned_image(images, salt, image_id, owner_token)
    except NotFound:
        raise NotFound("No link matches this id and owner key.", code="link_not_found") from None
    if link is None:
        raise NotFound("No link matches this id and owner key.", code="link_not_found")
    revoked = links.revoke(link_id, image_id, "revoked")
    tickets.drop_for_link(link_id)
    images.touch_purge_check(image_id)
    return revoked


def delete_image(
    *,
    images: ImageRepo,
    links: LinkRepo,
    tickets: TicketRepo,
    salt: bytes,
    image_id: str,
    owner_token: str,
) -> int:
    """Delete everywhere: every link ends at once, unused tickets are dropped, and the sweeper
    deletes the bytes. Idempotent. Returns how many links were ended."""
    doc = owned_image(images, salt, image_id, owner_token)
    status = str(doc.get("status"))
    if status != ImageStatus.DELETED.value and not images.mark_deleted(image_id, DELETABLE):
        current = (images.get(image_id) or {}).get("status")
        if current != ImageStatus.DELETED.value:
            raise Conflict(
                "This photo is with the moderators and cannot be deleted until they decide.",
                code="under_moderation",
                image_status=str(current),
            )
    ended = links.revoke_all(image_id, "deleted")
    tickets.drop_for_image(image_id)
    return ended


def heartbeat(
    *, links: LinkRepo, salt: bytes, link_id: str, session_key: str, grace_s: int
) -> datetime:
    """The uploader's page is still open: keep its end-of-session link alive for ``grace_s``
    more seconds (never past its expiry). A link whose session has lapsed stays dead."""
    link = links.by_link_id(link_id) if len(link_id) <= 64 else None
    stored = str(link.get("session_hash") or "-") if link else "-"
    if link is None or not same_hash(stored, token_hash(salt, session_key)):
        raise NotFound("No session matches this link and key.", code="session_not_found")
    until: datetime = min(link["expires_at"], now() + timedelta(seconds=grace_s))
    if not links.heartbeat(link_id, stored, until):
        raise gone_reason(links.by_link_id(link_id) or link)
    return until
