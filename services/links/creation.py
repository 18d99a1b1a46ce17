"""Making a link: the owner proves the image is theirs, the image must be cleared, and the
options (already checked against the caps by options.resolve) are stored with the link. A
public link is also listed in the gallery, once per image."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from services.shared.errors import Conflict, DomainError, Forbidden, Gone, NotFound
from services.shared.linkrepo import LinkRepo
from services.shared.mongo import Doc
from services.shared.repos import ImageRepo, now
from services.shared.status import ImageStatus, may_serve
from services.shared.tokens import new_id, new_token, token_hash


@dataclass(frozen=True)
class LinkOptions:
    expires_in_s: int
    max_views: int
    max_views_per_viewer: int | None = None
    end_of_session: bool = False
    password_hash: str | None = None
    gallery_category: str | None = None  # listed in the public gallery under this category


@dataclass(frozen=True)
class GalleryEntry:
    category: str
    public_id: str  # names the entry in the gallery; neither the link id nor its token
    listed_at: datetime


@dataclass(frozen=True)
class CreatedLink:
    token: str
    link_id: str
    image_id: str
    expires_at: datetime
    alive_until: datetime
    options: LinkOptions
    session_key: str | None  # only for end-of-session links: the uploader page's heartbeat key
    gallery: GalleryEntry | None = None


_NOT_READY = {
    ImageStatus.PENDING.value: (
        "not_scanned_yet",
        "The photo is still being checked. Try again in a moment.",
    ),
    ImageStatus.REVIEW.value: ("under_review", "The photo is waiting for a moderator's decision."),
}


_OWNER_ENDED = (ImageStatus.DELETED.value, ImageStatus.EXPIRED.value)


class AlreadyCreated(Conflict):
    """This creation request (the same one-time form key or Idempotency-Key) already made a
    link: a reload or a retry never makes a second one. Carries the first link's id (the
    token is not stored, so it cannot be shown again)."""

    code = "already_created"


def request_hash(salt: bytes, image_id: str, request_key: str) -> str:
    """The keyed hash a creation request is remembered by (per image; the key is never
    stored as sent)."""
    return token_hash(salt, f"link-request|{image_id}|{request_key}")


def unavailable(status: str) -> DomainError:
    """Why no link can be made for an owned image that is not cleared: still being checked or
    held (409), deleted or expired (410 ``image_gone``), taken down (451 ``removed``, as the
    share side says), anything else (blocked…) 403."""
    if status in _NOT_READY:
        code, message = _NOT_READY[status]
        return Conflict(message, code=code, image_status=status)
    if status in _OWNER_ENDED:
        return Gone(
            "This photo has been deleted or has expired: upload it again to share it.",
            code="image_gone",
            image_status=status,
        )
    if status == ImageStatus.REMOVED.value:
        return DomainError("This photo is no longer available.", code="removed", status=451)
    return Forbidden("This photo cannot be shared.", code="image_not_available")


def _already_created(link: Doc) -> AlreadyCreated:
    return AlreadyCreated(
        "This link was already made: reloading or sending the form again does not make "
        "another. Use the link you were shown, or turn it off with your owner key.",
        link_id=str(link["link_id"]),
    )


def owned_image(images: ImageRepo, salt: bytes, image_id: str, owner_token: str) -> Doc:
    """The image, if ``owner_token`` is its owner's (constant-time comparison of keyed hashes)."""
    doc = images.get_owned(image_id, token_hash(salt, owner_token))
    if doc is None:  # the same answer for "no such image" and "wrong owner key"
        raise NotFound("No image matches this id and owner key.", code="image_not_found")
    return doc


def create_link(
    *,
    images: ImageRepo,
    links: LinkRepo,
    salt: bytes,
    image_id: str,
    owner_token: str,
    options: LinkOptions,
    session_grace_s: int,
    record_retention_s: int,
    request_key: str | None = None,
) -> CreatedLink:
    """``request_key``: the creation request's one-time key; a second request with the same
    key (and image) is refused with AlreadyCreated (409), however the first one went."""
    doc = owned_image(images, salt, image_id, owner_token)
    request = request_hash(salt, image_id, request_key) if request_key else None
    if request is not None:
        earlier = links.by_request(request)
        if earlier is not None:
            raise _already_created(earlier)
    status = str(doc.get("status"))
    if not may_serve(status):
        raise unavailable(status)
    t = now()
    expires_at = t + timedelta(seconds=options.expires_in_s)
    alive_until = expires_at
    session_key = None
    if options.end_of_session:
        session_key = new_token()
        alive_until = min(expires_at, t + timedelta(seconds=session_grace_s))
    token = new_token()
    link_id = new_id()
    purge_at = expires_at + timedelta(seconds=record_retention_s)
    gallery = _list_in_gallery(links, image_id, link_id, options, t, purge_at)
    created = CreatedLink(
        token=token,
        link_id=link_id,
        image_id=image_id,
        expires_at=expires_at,
        alive_until=alive_until,
        options=options,
        session_key=session_key,
        gallery=gallery,
    )
    record: Doc = {
        "_id": token_hash(salt, token),
        "link_id": link_id,
        "image_id": image_id,
        "expires_at": expires_at,
        "alive_until": alive_until,
        "max_views": options.max_views,
        "max_views_per_viewer": options.max_views_per_viewer,
        "end_of_session": options.end_of_session,
        "session_hash": token_hash(salt, session_key) if session_key else None,
        "password_hash": options.password_hash,
        "purge_at": purge_at,
    }
    if gallery is not None:
        record["gallery"] = asdict(gallery)
    if request is not None:
        record["request_hash"] = request
    try:
        stored = links.insert(record)
    except Exception:
        if gallery is not None:
            links.release_gallery(image_id, link_id)
        raise
    if not stored:  # the same request, posted twice at once: the other post made the link
        if gallery is not None:
            links.release_gallery(image_id, link_id)
        earlier = links.by_request(request) if request is not None else None
        raise _already_created(earlier or record)
    if not images.note_link(image_id, alive_until):
        # The image stopped being cleared (or was swept) while the link was being made.
        links.revoke(created.link_id, image_id, "revoked")
        now_doc = images.get(image_id)
        raise unavailable(str(now_doc.get("status")) if now_doc else ImageStatus.EXPIRED.value)
    return created


def _list_in_gallery(
    links: LinkRepo,
    image_id: str,
    link_id: str,
    options: LinkOptions,
    at: datetime,
    purge_at: datetime,
) -> GalleryEntry | None:
    """The gallery entry of a public link: an image is listed at most once, ever (409)."""
    if options.gallery_category is None:
        return None
    if options.password_hash is not None:
        raise DomainError(
            "A password-protected link cannot be shown in the public gallery.",
            code="password_not_public",
        )
    if not links.claim_gallery(image_id, link_id, purge_at):
        raise Conflict(
            "This photo is already in the public gallery. Make a private link instead.",
            code="already_public",
        )
    listed_at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # the database keeps ms
    return GalleryEntry(options.gallery_category, new_id(), listed_at)
