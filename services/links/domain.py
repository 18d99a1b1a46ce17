"""Who may see what, and how many times. Plain functions over repositories; fail closed.

A view is spent only by an explicit reveal: one conditional update on the link (and one on the
viewer's counter when the link limits views per viewer). The reveal returns a single-use,
short-lived ticket; the image URL redeems the ticket once. A link is found by its share token
(``/s/``) or, for a public link, by its gallery entry's public id (``/g/``). Making links lives
in creation.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gridfs.errors import NoFile

from services.links.passwords import PasswordCheck
from services.links.visitors import Viewer
from services.shared.errors import DomainError, Gone, NotFound
from services.shared.linkrepo import LinkRepo, TicketRepo, ViewerRepo
from services.shared.mongo import BlobStore, Doc
from services.shared.repos import ImageRepo, now
from services.shared.status import ImageStatus, may_serve
from services.shared.tokens import new_token, token_hash

# Looked up when a token matches nothing, so an unknown token costs the same reads as a real one.
_NO_IMAGE = "0" * 32


class Removed(DomainError):
    status = 451
    code = "removed"


@dataclass(frozen=True)
class LinkView:
    link_id: str
    views_left: int
    expires_at: datetime
    max_views_per_viewer: int | None
    end_of_session: bool
    password_required: bool


@dataclass(frozen=True)
class Ticket:
    ticket: str
    expires_at: datetime
    views_left: int


@dataclass(frozen=True)
class Served:
    data: bytes
    content_type: str


def gone_reason(link: Doc, at: datetime | None = None) -> DomainError:
    """Why a link no longer serves, most specific first."""
    at = at or now()
    reason = link.get("ended_reason")
    if reason == "removed":
        return Removed("This photo is no longer available.")
    if reason == "deleted":
        return Gone("The sender deleted this photo.", code="deleted")
    if link.get("revoked"):
        return Gone("This link was revoked by its owner.", code="revoked")
    if link["expires_at"] <= at:
        return Gone("This link has expired.", code="expired")
    if link.get("alive_until") is not None and link["alive_until"] <= at:
        return Gone(
            "The sender closed their page, and this link ended with it.", code="session_ended"
        )
    return Gone("This link has been used up.", code="used_up")


def is_live(link: Doc, at: datetime) -> bool:
    """Python twin of ``linkrepo.live_filter`` for a link already read."""
    alive_until = link.get("alive_until") or link["expires_at"]
    return (
        not link.get("revoked")
        and int(link.get("remaining", 0)) > 0
        and link["expires_at"] > at
        and alive_until > at
    )


def _find(links: LinkRepo, salt: bytes, token: str, public_id: str | None) -> Doc | None:
    """A link by its share token (``/s/``) or, given ``public_id``, by its gallery entry."""
    if public_id is not None:
        return links.by_public_id(public_id) if len(public_id) <= 64 else None
    return links.get(token_hash(salt, token)) if len(token) <= 128 else None


def lookup(
    images: ImageRepo, links: LinkRepo, salt: bytes, token: str, public_id: str | None
) -> tuple[Doc, Doc | None]:
    """The link and its image. An unknown token or public id does the same two reads as a
    real one before its 404."""
    link = _find(links, salt, token, public_id)
    image = images.get(str(link["image_id"]) if link else _NO_IMAGE)
    if link is None:
        raise NotFound("This link does not exist.", code="link_not_found")
    return link, image


_OWN_ENDINGS = (ImageStatus.CLEARED.value, ImageStatus.EXPIRED.value, ImageStatus.DELETED.value)


def _check_image(image: Doc | None) -> Doc:
    """The image, if it may be shown. Its owner's deletion and its natural end are said as
    such (410); anything else not cleared gets the neutral 451 (fail closed)."""
    status = str(image.get("status")) if image else ""
    if image is not None and may_serve(status):
        return image
    if status == ImageStatus.DELETED.value:
        raise Gone("The sender deleted this photo.", code="deleted")
    if status == ImageStatus.EXPIRED.value:
        raise Gone("This link has expired.", code="expired")
    raise Removed("This photo is no longer available.")


def check_link_and_image(link: Doc, image: Doc | None) -> Doc:
    """The image, unless the link ended or the image may not be shown. A link that ended on
    its own says why (used up, expired…) even after the sweeper deleted the bytes;
    moderation's 451 wins over everything."""
    ended = None if is_live(link, now()) else gone_reason(link)
    status = str(image.get("status")) if image else ""
    if ended is not None and status in _OWN_ENDINGS:
        raise ended
    shown = _check_image(image)
    if ended is not None:
        raise ended
    return shown


def describe(
    *,
    images: ImageRepo,
    links: LinkRepo,
    salt: bytes,
    token: str = "",
    public_id: str | None = None,
) -> LinkView:
    """What the share page says (found by ``token``, or by the gallery's ``public_id``).
    Counts nothing and reads no image bytes."""
    link, image = lookup(images, links, salt, token, public_id)
    check_link_and_image(link, image)
    return LinkView(
        link_id=str(link["link_id"]),
        views_left=int(link["remaining"]),
        expires_at=link["expires_at"],
        max_views_per_viewer=link.get("max_views_per_viewer"),
        end_of_session=bool(link.get("end_of_session")),
        password_required=bool(link.get("password_hash")),
    )


def reveal(
    *,
    images: ImageRepo,
    links: LinkRepo,
    viewers: ViewerRepo,
    tickets: TicketRepo,
    passwords: PasswordCheck,
    salt: bytes,
    token: str = "",
    public_id: str | None = None,
    viewer: Viewer,
    ticket_ttl_s: int,
) -> Ticket:
    """Spend one view and hand out a single-use ticket for the bytes.

    Nothing is spent when the image is not servable, the link has ended, or the password is
    wrong. The per-viewer counter moves first and is given back if the link then refuses.
    The link is named by its share ``token`` or by its gallery ``public_id``: one flow."""
    link, image = lookup(images, links, salt, token, public_id)
    check_link_and_image(link, image)  # a removed image never costs the viewer a view
    passwords.check(link, viewer)
    link_hash = str(link["_id"])
    link_id = str(link["link_id"])
    per_viewer = int(link.get("max_views_per_viewer") or 0)
    viewer_id = token_hash(salt, f"viewer|{link_id}|{viewer.key}") if per_viewer else None
    if viewer_id is not None and not viewers.take(
        viewer_id, link_id, per_viewer, link.get("purge_at") or link["expires_at"]
    ):
        raise Gone(
            "You have used all your views of this link.",
            code="viewer_used_up",
            max_views_per_viewer=per_viewer,
        )
    # The ticket exists before the view is spent, so the sweeper, which reads links before
    # tickets, never sees a spent link with no ticket keeping the bytes. Nobody holds it yet.
    image_id = str(link["image_id"])
    ticket = new_token()
    ticket_hash = token_hash(salt, ticket)
    expires_at = now() + timedelta(seconds=ticket_ttl_s)
    last = int(link["remaining"]) <= 1  # this reveal may spend the link's last view
    tickets.insert(ticket_hash, link_id, image_id, expires_at, last=last)
    if not links.redeem(link_hash):
        tickets.discard(ticket_hash)
        if viewer_id is not None:
            viewers.give_back(viewer_id)
        raise gone_reason(links.get(link_hash) or link)
    # No second status read here: the image URL checks the status again before any byte.
    views_left = max(0, int(link["remaining"]) - 1)
    if views_left == 0:
        images.touch_purge_check(image_id)  # the sweeper looks again once the ticket is used
    return Ticket(ticket=ticket, expires_at=expires_at, views_left=views_left)


def _ticket(images: ImageRepo, tickets: TicketRepo, salt: bytes, ticket: str) -> tuple[Doc, Doc]:
    doc = tickets.get(token_hash(salt, ticket)) if len(ticket) <= 128 else None
    image = images.get(str(doc["image_id"]) if doc else _NO_IMAGE)
    if doc is None:
        raise NotFound("This view does not exist.", code="ticket_not_found")
    image = _check_image(image)
    if doc.get("used_at") is not None:
        raise Gone("This view has ended. Ask the sender for a new link.", code="view_ended")
    if doc["expires_at"] <= now():
        raise Gone("This view lapsed before the photo loaded.", code="view_expired")
    return doc, image


def check_ticket(*, images: ImageRepo, tickets: TicketRepo, salt: bytes, ticket: str) -> None:
    """The view page: is the ticket still good? Spends nothing."""
    _ticket(images, tickets, salt, ticket)


def redeem_ticket(
    *, images: ImageRepo, tickets: TicketRepo, blobs: BlobStore, salt: bytes, ticket: str
) -> Served:
    """Serve the bytes once per ticket, and only while the image is cleared."""
    doc, image = _ticket(images, tickets, salt, ticket)
    if not tickets.use(str(doc["_id"])):
        raise Gone("This view has ended. Ask the sender for a new link.", code="view_ended")
    image = _check_image(images.get(str(doc["image_id"])))  # moderation may have acted
    if doc.get("last"):  # the link's last view is being served: the sweeper looks soon
        images.touch_purge_check(str(doc["image_id"]))
    try:
        data = blobs.get(str(image["blob_id"]))
    except NoFile as exc:  # bytes swept away in between: the image is gone, not broken
        raise Gone("This photo has been deleted.", code="expired") from exc
    return Served(data=data, content_type=str(image["content_type"]))
