"""Images in rooms. The browser uploads to ingest, then names the image (id + owner token) in
a frame. The message waits in ``scanning`` and becomes ``visible`` only once the image is
``cleared`` (by the ``image.scanned`` event, at posting time if the scan was already done, or
by the sweeper's reconcile); anything else ends ``refused``. Bytes are served only while the
message is visible, the room live and the image cleared (fail closed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.rooms import domain, metrics
from services.rooms.domain import Action, FrameError
from services.rooms.ops import Poster, charge, costs_of, message_doc, message_frame
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.shared import roommod
from services.shared.errors import DomainError, Gone, NotFound
from services.shared.mongo import Doc
from services.shared.repos import now
from services.shared.status import ImageStatus, may_serve
from services.shared.tokens import token_hash

# emit(room_id, frame, to): broadcast a frame to a room (to = one nickname key only)
Emit = Callable[[str, dict[str, Any], str | None], None]


def _owned(p: Ports, salt: bytes, image_id: Any, owner_token: Any) -> Doc:
    ok_types = domain.encodable(image_id) and domain.encodable(owner_token)
    doc = p.images.get_owned(image_id, token_hash(salt, owner_token[:256])) if ok_types else None
    if doc is None:
        raise FrameError("No image matches this id and owner key.", code="image_not_found")
    return doc


def post_image(
    p: Ports,
    settings: RoomsSettings,
    salt: bytes,
    poster: Poster,
    frame: dict[str, Any],
    expires_at: Any,
) -> Doc:
    """Store the image message (``scanning``); the caller then settles it at once."""
    charge(p, costs_of(settings), poster.client, Action.IMAGE)
    image = _owned(p, salt, frame.get("image_id"), frame.get("owner_token"))
    status = str(image.get("status"))
    if status not in (ImageStatus.PENDING.value, ImageStatus.CLEARED.value):
        raise FrameError("This image cannot be shown.", code="image_not_allowed")
    image_id = str(image["_id"])
    if p.messages.image_elsewhere(image_id, poster.room_id):
        raise FrameError("This image was posted in another room.", code="image_in_other_room")
    doc = message_doc(
        poster,
        expires_at,
        now(),
        kind="image",
        text="",
        image_id=image_id,
        state=roommod.SCANNING,
    )
    p.messages.insert(doc)
    metrics.MESSAGES.labels("image").inc()
    return doc


def settle_image(p: Ports, image_id: str, path: str, emit: Emit) -> int:
    """Settle every ``scanning`` message of the image from its status; returns how many moved.
    Conditional updates: the event, the poster's own check and the reconcile may all run."""
    image = p.images.get(image_id)
    status = str((image or {}).get("status", "gone"))
    if status == ImageStatus.PENDING.value:
        return 0
    moved = 0
    for msg in p.messages.scanning_for_image(image_id):
        room = p.rooms.get(str(msg["room_id"]))
        live = room is not None and domain.end_reason(room, now()) is None
        if may_serve(status) and live and room is not None:
            if not p.messages.settle(str(msg["_id"]), roommod.VISIBLE):
                continue
            p.images.keep_for(image_id, room["expires_at"])
            emit(str(msg["room_id"]), message_frame(msg, str(room["slug"])), None)
            metrics.IMAGES_SETTLED.labels("visible", path).inc()
        else:
            if not p.messages.settle(str(msg["_id"]), roommod.REFUSED):
                continue
            frame = {"type": "image_refused", "id": str(msg["_id"])}
            emit(str(msg["room_id"]), frame, str(msg.get("nick_key") or ""))
            metrics.IMAGES_SETTLED.labels("refused", path).inc()
        moved += 1
    return moved


def reconcile(p: Ports, emit: Emit, older_than_s: float = 3.0, limit: int = 100) -> int:
    """Scanning messages whose ``image.scanned`` the broker lost: settle from MongoDB."""
    due = p.messages.scanning_older_than(now() - timedelta(seconds=older_than_s), limit)
    done, moved = set(), 0
    for msg in due:
        image_id = str(msg.get("image_id") or "")
        if image_id and image_id not in done:
            done.add(image_id)
            moved += settle_image(p, image_id, "reconcile", emit)
    return moved


def take_down(p: Ports, image_id: str, emit: Emit, reason: str = "image removed") -> int:
    """An image was removed by moderation: its messages go, in every room."""
    removed = 0
    for msg in p.messages.for_image(image_id):
        if roommod.remove_message(p.db, str(msg["_id"]), by="moderator", reason=reason):
            emit(str(msg["room_id"]), {"type": "removed", "id": str(msg["_id"])}, None)
            removed += 1
    if removed:
        metrics.MODERATION.labels("remove_message", "takedown").inc(removed)
    return removed


@dataclass(frozen=True)
class Served:
    data: bytes
    content_type: str


def served_image(p: Ports, slug: str, message_id: str, thumb: bool, at: datetime) -> Served:
    """The bytes of a visible image message of a live room, if the image is cleared."""
    room = p.rooms.by_slug(slug)
    msg = p.messages.get(message_id)
    if room is None or msg is None or msg.get("room_id") != room["_id"]:
        raise NotFound("Nothing is here.", code="image_not_found")
    if domain.end_reason(room, at) is not None:
        raise Gone("This room has ended.", code="room_ended")
    if msg.get("kind") != "image" or msg.get("state") != roommod.VISIBLE:
        if msg.get("state") == roommod.REMOVED:
            raise DomainError("This image was removed.", code="removed", status=451)
        raise NotFound("Nothing is here.", code="image_not_found")
    image = p.images.get(str(msg.get("image_id")))
    if image is None or not may_serve(str(image.get("status"))):
        raise DomainError(
            "This image cannot be shown.", code="unavailable_for_legal_reasons", status=451
        )
    blob = image.get("thumb_blob_id") if thumb else image.get("blob_id")
    if not blob:
        raise NotFound("Nothing is here.", code="image_not_found")
    kind = image.get("thumb_content_type") if thumb else image.get("content_type")
    return Served(p.blobs.get(str(blob)), str(kind or "image/jpeg"))
