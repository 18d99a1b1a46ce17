"""The rooms queue, from the reviewer's side: open room reports (messages members reported in
a chat room) and what a reviewer sees of each — the reported message, who posted it, the room,
and a few messages before it for context (text only: an image message shows as "image").

``RoomStore`` is the review service's port onto the room collections; it only calls the moves
in ``services.shared.roommod`` (shared with the rooms service, which owns those collections).
Decisions live in ``room_decisions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database

from services.review import metrics
from services.shared import roommod
from services.shared.mongo import Doc
from services.shared.repos import now

QUEUE = "rooms"  # the label of the rooms queue in the queue gauges and the queue summary
LISTING_MAX = 100
TEXT_PREVIEW_MAX = 2000


class RoomStore:
    """Room reports, messages and rooms in MongoDB (``roommod`` does every move)."""

    def __init__(self, db: Database[Doc]) -> None:
        self.db = db

    def ensure_indexes(self) -> None:
        roommod.ensure_indexes(self.db)

    def open_reports(self, limit: int, skip: int = 0) -> list[Doc]:
        return roommod.open_room_reports(self.db, limit=limit, skip=skip)

    def open_stats(self) -> tuple[int, datetime | None]:
        return roommod.open_room_report_stats(self.db)

    def get_report(self, report_id: str) -> Doc | None:
        return roommod.get_room_report(self.db, report_id)

    def settle(self, report_id: str, *, state: str, action: str, by: str, reason: str) -> bool:
        return roommod.settle_room_report(
            self.db, report_id, state=state, action=action, by=by, reason=reason
        )

    def reopen(self, report: Doc) -> bool:
        return roommod.reopen_room_report(self.db, report)

    def open_in_room(self, room_id: str) -> list[Doc]:
        return roommod.open_reports_in_room(self.db, room_id)

    def get_message(self, message_id: str) -> Doc | None:
        return roommod.get_message(self.db, message_id)

    def remove_message(self, message_id: str, *, by: str, reason: str) -> Doc | None:
        return roommod.remove_message(self.db, message_id, by=by, reason=reason)

    def mute(self, room_id: str, nickname: str) -> bool:
        return roommod.mute_nickname(self.db, room_id, nickname)

    def close(self, room_id: str, *, by: str, reason: str) -> bool:
        return roommod.close_room(self.db, room_id, by=by, reason=reason)

    def image_ids(self, room_id: str) -> list[str]:
        return roommod.room_image_ids(self.db, room_id)

    def summary(self, room_id: str) -> dict[str, Any] | None:
        return roommod.room_summary(self.db, room_id)

    def context(self, room_id: str, at: datetime) -> list[Doc]:
        return roommod.messages_before(self.db, room_id, at)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _age_s(value: Any, at: datetime) -> float:
    if not isinstance(value, datetime):
        return 0.0
    moment = value if value.tzinfo else value.replace(tzinfo=at.tzinfo)
    return max(0.0, (at - moment).total_seconds())


def _shown(message: Doc) -> dict[str, Any]:
    """A context message as a moderator sees it: text only, never an image."""
    kind = str(message.get("kind") or "text")
    state = str(message.get("state") or roommod.VISIBLE)
    text = str(message.get("text") or "") if kind == "text" and state != roommod.REMOVED else ""
    return {
        "message_id": str(message["_id"]),
        "kind": kind,
        "nickname": str(message.get("nickname") or ""),
        "text": text[:TEXT_PREVIEW_MAX],
        "state": state,
        "at": _iso(message.get("at")),
    }


def report_view(
    store: RoomStore,
    report: Doc,
    at: datetime,
    rooms: dict[str, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """One room report as the queue shows it. ``rooms`` caches room summaries per listing."""
    room_id = str(report.get("room_id") or "")
    rooms = {} if rooms is None else rooms
    if room_id not in rooms:
        rooms[room_id] = store.summary(room_id)
    room = rooms[room_id]
    message = store.get_message(str(report.get("message_id") or ""))
    context = []
    if message is not None and isinstance(message.get("at"), datetime):
        context = [_shown(m) for m in store.context(room_id, message["at"])]
    kind = str(report.get("kind") or "text")
    nickname = str(report.get("nickname") or "")
    muted = set((room or {}).get("muted") or [])
    reasons = [str(r) for r in report.get("reasons") or []]
    return {
        "report_id": str(report["_id"]),
        "state": str(report.get("state") or roommod.OPEN),
        "priority": int(report.get("priority", 1)),
        "reasons": reasons,
        "reporters": len(report.get("reporters") or []),
        "details": [str(d) for d in report.get("details") or [] if d],
        "created_at": _iso(report.get("created_at")),
        "age_s": _age_s(report.get("created_at"), at),
        "room": room
        or {"room_id": room_id, "name": "", "public": False, "closed": True, "gone": True},
        "message": {
            "message_id": str(report.get("message_id") or ""),
            "kind": kind,
            "nickname": nickname,
            "nickname_muted": roommod.nick_key(nickname) in muted,
            # The text as it was reported (a removal drops it from the message itself).
            "text": str(report.get("text") or "")[:TEXT_PREVIEW_MAX] if kind == "text" else "",
            "image_id": report.get("image_id") if kind == "image" else None,
            "state": str(message.get("state") or roommod.VISIBLE) if message else "gone",
            "at": _iso(message.get("at")) if message else None,
        },
        "context": context,
        "decision": {
            "action": report.get("action"),
            "by": report.get("decided_by"),
            "reason": report.get("decision_reason"),
            "at": _iso(report.get("decided_at")),
        }
        if report.get("state") != roommod.OPEN
        else None,
    }


def listing(store: RoomStore, limit: int = 25, skip: int = 0) -> list[dict[str, Any]]:
    """Open room reports in hand-out order: minor safety first, then oldest first."""
    at = now()
    rooms: dict[str, dict[str, Any] | None] = {}
    docs = store.open_reports(max(1, min(limit, LISTING_MAX)), max(0, skip))
    return [report_view(store, d, at, rooms) for d in docs]


def queue_entry(store: RoomStore) -> dict[str, Any]:
    """The rooms queue's line in the queue summary: depth and oldest open report's age."""
    depth, oldest = store.open_stats()
    return {
        "queue": QUEUE,
        "depth": depth,
        "oldest_age_s": _age_s(oldest, now()) if depth else 0.0,
        "url": "/rooms",
    }


def refresh_gauges(store: RoomStore) -> None:
    entry = queue_entry(store)
    metrics.QUEUE_DEPTH.labels(QUEUE).set(entry["depth"])
    metrics.OLDEST_JOB_AGE.labels(QUEUE).set(entry["oldest_age_s"])
