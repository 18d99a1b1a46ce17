"""A reviewer's decision on a room report, and its effects.

- remove_message: the message is hidden for everyone (its text is dropped); an image message's
  bytes are no longer kept alive by the room.
- mute: the message's nickname (any case of it) may read but no longer post in the room.
- close: the room ends now (``closed_by`` moderator); every image posted in it is released, and
  the room's other open reports are settled with it. Admins only (``403 admin_only``).
- dismiss: nothing to do; the report is settled.

Order: every check first; then the report is settled with one conditional update (the
serialisation point: a second decision gets ``409 already_decided``); then the move in MongoDB,
which is the truth. Should the move fail, the report is reopened. Then the audit record, the
count, and ``room.moderated`` for live connections: a broker outage loses no decision (the
failure is logged and counted; the rooms service also reads MongoDB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.review import announce, metrics
from services.review.jobs import MAX_NOTE, POLICY_REASONS, Actor
from services.review.ports import Ports
from services.shared import roommod
from services.shared.errors import Conflict, DomainError, Forbidden, NotFound
from services.shared.events import RoomModerated
from services.shared.mongo import Doc


class RoomAction(StrEnum):
    REMOVE_MESSAGE = "remove_message"
    MUTE = "mute"
    CLOSE = "close"
    DISMISS = "dismiss"


ADMIN_ACTIONS = frozenset({RoomAction.CLOSE})
# Dismissing cites no violation (or "other"); every other action must cite the violation.
_CLEAN_REASONS = frozenset({"no_violation", "other"})


def actions_for(me: Actor) -> list[str]:
    return [a.value for a in RoomAction if me.is_admin or a not in ADMIN_ACTIONS]


@dataclass(frozen=True)
class RoomDecided:
    report_id: str
    action: str
    room_id: str
    message_id: str
    changed: bool  # False: already so (the message was removed, the room already closed ...)
    announced: bool  # room.moderated reached the broker (always False for dismiss)
    released: list[str] = field(default_factory=list)  # images no longer kept by the room
    also_settled: list[str] = field(default_factory=list)  # other reports a closure settled

    def to_dict(self) -> dict[str, Any]:
        return {
            "decided": self.report_id,
            "action": self.action,
            "room_id": self.room_id,
            "message_id": self.message_id,
            "changed": self.changed,
            "announced": self.announced,
            "released": self.released,
            "also_settled": self.also_settled,
        }


def check_action(action: str, me: Actor) -> RoomAction:
    try:
        chosen = RoomAction(action)
    except ValueError:
        raise DomainError(
            f"Unknown action; use one of {[a.value for a in RoomAction]}.", code="unknown_action"
        ) from None
    if chosen in ADMIN_ACTIONS and not me.is_admin:
        raise Forbidden("Only an admin may close a room.", code="admin_only")
    return chosen


def check_reason(action: RoomAction, reason: str) -> str:
    if reason not in POLICY_REASONS:
        raise DomainError(
            f"Choose a policy reason: one of {list(POLICY_REASONS)}.", code="invalid_reason"
        )
    if action is RoomAction.DISMISS and reason not in _CLEAN_REASONS:
        raise DomainError(
            "Dismissing finds no violation: the reason is no_violation or other.",
            code="reason_mismatch",
        )
    if action is not RoomAction.DISMISS and reason == "no_violation":
        raise DomainError(
            f"'{action.value}' needs the violation as its reason.", code="reason_mismatch"
        )
    return reason


def get_open_report(p: Ports, report_id: str) -> Doc:
    report = p.rooms.get_report(report_id)
    if report is None:
        raise NotFound("No room report has this id.", code="report_not_found")
    if report.get("state") != roommod.OPEN:
        raise Conflict(
            "This report is already decided.",
            code="already_decided",
            action=report.get("action"),
            decided_by=report.get("decided_by"),
        )
    return report


def decide_room_report(
    p: Ports, report_id: str, me: Actor, action: str, reason: str, note: str = ""
) -> RoomDecided:
    """Decide one room report (see the module docstring)."""
    chosen = check_action(action, me)
    check_reason(chosen, reason)
    report = get_open_report(p, report_id)
    state = roommod.DISMISSED if chosen is RoomAction.DISMISS else roommod.ACTIONED
    if not p.rooms.settle(
        report_id, state=state, action=chosen.value, by=me.username, reason=reason
    ):
        raise Conflict("This report was decided meanwhile.", code="already_decided")
    try:
        changed, released = _move(p, report, chosen, me.username, reason)
    except BaseException:
        p.rooms.reopen(report)
        raise
    also = _settle_room(p, report, me.username) if chosen is RoomAction.CLOSE else []
    room_id = str(report["room_id"])
    message_id = str(report["message_id"])
    nickname = str(report.get("nickname") or "")
    extra: dict[str, Any] = {
        "report_id": report_id,
        "room_id": room_id,
        "message_id": message_id,
        "nickname": nickname,
        "reasons": list(report.get("reasons") or []),
        "reporters": len(report.get("reporters") or []),
        "changed": changed,
    }
    if note.strip():
        extra["note"] = note.strip()[:MAX_NOTE]
    if released:
        extra["released_images"] = released
    if also:
        extra["also_settled"] = also
    target = room_id if chosen in (RoomAction.MUTE, RoomAction.CLOSE) else message_id
    p.audit.record(f"room.{chosen.value}", me.username, target, reason, **extra)
    metrics.ROOM_DECISIONS.labels(chosen.value).inc()
    announced = False
    if chosen is not RoomAction.DISMISS:
        payload = RoomModerated(
            room_id=room_id,
            action=chosen.value,
            message_id=message_id,
            nickname=nickname,
            reason=reason,
        )
        announced = announce.room_moderated(p.publisher, payload)
    return RoomDecided(
        report_id, chosen.value, room_id, message_id, changed, announced, released, also
    )


def _move(
    p: Ports, report: Doc, action: RoomAction, actor: str, reason: str
) -> tuple[bool, list[str]]:
    """The move in MongoDB (each is idempotent). Returns (changed, images released)."""
    room_id = str(report["room_id"])
    if action is RoomAction.REMOVE_MESSAGE:
        removed = p.rooms.remove_message(str(report["message_id"]), by=actor, reason=reason)
        image_id = (removed or {}).get("image_id") or report.get("image_id")
        released = [str(image_id)] if image_id else []
        for image in released:
            p.images.release_keep(image)
        return removed is not None, released
    if action is RoomAction.MUTE:
        return p.rooms.mute(room_id, str(report.get("nickname") or "")), []
    if action is RoomAction.CLOSE:
        closed = p.rooms.close(room_id, by="moderator", reason=reason)
        released = sorted(set(p.rooms.image_ids(room_id)))
        for image in released:
            p.images.release_keep(image)
        return closed, released
    return False, []


def _settle_room(p: Ports, report: Doc, actor: str) -> list[str]:
    """A closed room's other open reports are settled with the closure."""
    settled = []
    for other in p.rooms.open_in_room(str(report["room_id"])):
        other_id = str(other["_id"])
        if other_id == report["_id"]:
            continue
        why = f"closed_with:{report['_id']}"
        if p.rooms.settle(
            other_id, state=roommod.ACTIONED, action=RoomAction.CLOSE.value, by=actor, reason=why
        ):
            settled.append(other_id)
    return settled
