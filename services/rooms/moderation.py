"""Owners (kick, close), members' reports, moderators' events, and the end of rooms: the
sweeper closes rooms past their end or idle deadline and deletes their messages and members
at once (TTL indexes are only the backstop), releasing the images they kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from services.rooms import domain, images, metrics
from services.rooms.domain import Action
from services.rooms.images import Emit
from services.rooms.ops import charge, costs_of
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.shared import roommod
from services.shared.errors import Conflict, Forbidden, NotFound
from services.shared.mongo import Doc
from services.shared.reports import ReportReason, file_report
from services.shared.repos import now
from services.shared.roomrepo import aware
from services.shared.tokens import same_hash, token_hash


def owned_room(p: Ports, salt: bytes, slug: str, owner_token: str) -> Doc:
    room = domain.check_live(p.rooms.by_slug(slug), now())
    if not same_hash(str(room.get("owner_token_hash", "-")), token_hash(salt, owner_token)):
        raise Forbidden("This owner key does not open this room.", code="owner_key_invalid")
    return room


def kick(
    p: Ports,
    settings: RoomsSettings,
    salt: bytes,
    slug: str,
    owner_token: str,
    nickname: Any,
    emit: Emit,
) -> str:
    room = owned_room(p, salt, slug, owner_token)
    room_id = str(room["_id"])
    key = domain.nick_key(nickname) if isinstance(nickname, str) and len(nickname) <= 64 else ""
    member = p.members.get(room_id, key) if key else None
    if member is None:
        raise NotFound("Nobody with this nickname is in the room.", code="member_not_found")
    if member.get("owner"):
        raise Conflict("The room's owner cannot be kicked.", code="owner_not_kickable")
    until = now() + timedelta(seconds=settings.rooms_kick_ban_s)
    client = str(member.get("client", ""))
    if client:  # no rejoin from that client key a while, except a join proving the owner key
        p.rooms.kick(room_id, client, until)
    p.members.remove(room_id, key)
    name = str(member.get("nickname", ""))
    # Every process ends the sockets of that member (its nickname), never the owner's: people
    # behind one address (family NAT, an office) are not kicked with them.
    emit(room_id, {"type": "kicked", "nickname": name}, None)
    metrics.MODERATION.labels("kick", "owner").inc()
    return name


def end_room(p: Ports, room: Doc, emit: Emit) -> int:
    """Delete a closed room's messages and members and release its images; tell live
    connections. Idempotent (the room is marked purged once)."""
    room_id = str(room["_id"])
    image_ids = set(roommod.room_image_ids(p.db, room_id))
    p.messages.delete_room(room_id)
    p.members.delete_room(room_id)
    for image_id in image_ids:
        p.images.release_keep(image_id)
    if p.rooms.mark_purged(room_id):
        reason = str(room.get("closed_by") or "closed")
        emit(room_id, {"type": "closed", "reason": reason}, None)
    return len(image_ids)


def close_by_owner(p: Ports, salt: bytes, slug: str, owner_token: str, emit: Emit) -> None:
    room = owned_room(p, salt, slug, owner_token)
    if roommod.close_room(p.db, str(room["_id"]), by="owner", reason="owner"):
        metrics.ROOMS_ENDED.labels("owner").inc()
    closed = p.rooms.get(str(room["_id"])) or room
    end_room(p, closed, emit)


@dataclass(frozen=True)
class SweepResult:
    closed: int = 0
    purged: int = 0
    settled: int = 0


def sweep(p: Ports, settings: RoomsSettings, emit: Emit) -> SweepResult:
    at = now()
    closed = 0
    for room in p.rooms.ended_unclosed(at):
        reason = domain.end_reason(room, at) or "expired"
        if roommod.close_room(
            p.db,
            str(room["_id"]),
            by=reason,
            reason=reason,
            retention_s=settings.rooms_record_retention_s,
        ):
            metrics.ROOMS_ENDED.labels(reason).inc()
            closed += 1
    purged = 0
    for room in p.rooms.closed_unpurged():
        end_room(p, room, emit)
        purged += 1
    settled = images.reconcile(p, emit)
    return SweepResult(closed, purged, settled)


def report(
    p: Ports,
    settings: RoomsSettings,
    salt: bytes,
    *,
    slug: str,
    message_id: str,
    reason: ReportReason,
    details: str,
    reporter: str,
    budget: str,
) -> str:
    """File a report on a message people can see. Text goes to the review console's Rooms
    queue; a photo to the image reports queue only (where reviewers see the image and decide
    for every place it is shown). ``reporter`` is the report-scope client key (one person is
    one reporter across links, the gallery and rooms); ``budget`` the rooms-scope key, so a
    report spends from the same points as joins and messages."""
    charge(p, costs_of(settings), budget, Action.REPORT, frame=False)
    room = p.rooms.by_slug(slug)
    msg = p.messages.get(message_id)
    if (
        room is None
        or msg is None
        or msg.get("room_id") != room["_id"]
        or msg.get("state") != roommod.VISIBLE
    ):
        raise NotFound("No message matches this report.", code="message_not_found")
    kind = str(msg.get("kind") or "text")
    if kind == "image" and msg.get("image_id"):
        filed = file_report(
            reports=p.reports,
            images=p.images,
            links=p.links,
            salt=salt,
            reason=reason,
            details=details,
            reporter=reporter,
            image_id=str(msg["image_id"]),
            jobs=p.jobs,
            auto_hide_reporters=settings.rooms_auto_hide_reporters,
        )
        metrics.REPORTS.labels(kind).inc()
        if filed.auto_hidden:  # this report hid the image everywhere until a reviewer decides
            metrics.AUTO_HIDES.inc()
        return filed.report_id
    end = aware(room["expires_at"], now())
    report_id = roommod.file_room_report(
        p.db,
        room_id=str(room["_id"]),
        message_id=message_id,
        reason=reason,
        details=details,
        reporter=reporter,
        keep_until=end + timedelta(seconds=settings.rooms_report_retention_s),
    )
    metrics.REPORTS.labels(kind).inc()
    return report_id
