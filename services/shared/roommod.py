"""Room moderation shared by the rooms service (owners, reports filed by members) and the
review service (moderators): the document shapes of rooms, messages and room reports, and the
moves on them. MongoDB is the truth; a ``room.moderated`` event only tells live connections.

Every move is one conditional ``update_one`` whose ``modified_count`` says whether it happened
(a second moderator, a retried request or a replayed event changes nothing)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.shared.errors import NotFound
from services.shared.mongo import Doc
from services.shared.reports import MAX_DETAILS, ReportReason
from services.shared.repos import now
from services.shared.tokens import new_id

ROOMS = "rooms"
MEMBERS = "room_members"
MESSAGES = "room_messages"
REPORTS = "room_reports"

VISIBLE = "visible"
SCANNING = "scanning"
REFUSED = "refused"
REMOVED = "removed"

# ``removed_by`` of an image message withdrawn because its image stopped being cleared.
BY_IMAGE_STATUS = "image_status"

OPEN = "open"
ACTIONED = "actioned"
DISMISSED = "dismissed"

ACTIONS = ("remove_message", "mute", "close")


def nick_key(nickname: str) -> str:
    """Nicknames are unique per room regardless of case."""
    return nickname.strip().casefold()


def ensure_indexes(db: Database[Doc]) -> None:
    db[REPORTS].create_index("open_key", unique=True)
    db[REPORTS].create_index(
        [("state", ASCENDING), ("priority", ASCENDING), ("created_at", ASCENDING)]
    )
    db[REPORTS].create_index("expires_at", expireAfterSeconds=0)


def get_message(db: Database[Doc], message_id: str) -> Doc | None:
    return db[MESSAGES].find_one({"_id": message_id})


def file_room_report(
    db: Database[Doc],
    *,
    room_id: str,
    message_id: str,
    reason: ReportReason,
    details: str,
    reporter: str,
    keep_until: datetime,
) -> str:
    """Add ``reporter`` (a salted client hash) to the message's one open report, creating it.
    Returns the report id. ``keep_until`` (usually the room's end plus the evidence window)
    is when the report may be forgotten if nobody handled it."""
    message = db[MESSAGES].find_one({"_id": message_id, "room_id": room_id})
    if message is None or message.get("state") == REMOVED:
        raise NotFound("No message matches this report.", code="message_not_found")
    priority = 0 if reason is ReportReason.MINOR_SAFETY else 1
    key = f"open:{message_id}"
    for _ in range(2):
        try:
            db[REPORTS].update_one(
                {"open_key": key},
                {
                    "$addToSet": {"reporters": reporter, "reasons": reason.value},
                    "$min": {"priority": priority},
                    "$push": {"details": {"$each": [details[:MAX_DETAILS]], "$slice": -20}},
                    "$setOnInsert": {
                        "_id": new_id(),
                        "room_id": room_id,
                        "message_id": message_id,
                        "kind": message.get("kind", "text"),
                        "nickname": message.get("nickname", ""),
                        "text": message.get("text", ""),
                        "image_id": message.get("image_id"),
                        "state": OPEN,
                        "created_at": now(),
                        "expires_at": keep_until,
                    },
                },
                upsert=True,
            )
            break
        except DuplicateKeyError:  # two first reports met; the second joins the first
            continue
    doc = db[REPORTS].find_one({"open_key": key}, {"_id": 1})
    return str(doc["_id"]) if doc else ""


def open_room_reports(db: Database[Doc], limit: int = 100, skip: int = 0) -> list[Doc]:
    cursor = (
        db[REPORTS]
        .find({"state": OPEN})
        .sort([("priority", ASCENDING), ("created_at", ASCENDING)])
        .skip(skip)
        .limit(limit)
    )
    return list(cursor)


def settle_room_report(
    db: Database[Doc], report_id: str, *, state: str, action: str, by: str, reason: str = ""
) -> bool:
    """Open → actioned/dismissed, once. Frees the message's open key for a later report."""
    res = db[REPORTS].update_one(
        {"_id": report_id, "state": OPEN},
        {
            "$set": {
                "state": state,
                "action": action,
                "decided_by": by,
                "decided_at": now(),
                "decision_reason": reason,
                "open_key": f"settled:{report_id}",
            }
        },
    )
    return res.modified_count == 1


def remove_message(db: Database[Doc], message_id: str, *, by: str, reason: str) -> Doc | None:
    """Hide a message for everyone (its text is dropped). Returns the message as it was if
    this call removed it (the caller releases its image and tells live connections)."""
    message = db[MESSAGES].find_one({"_id": message_id})
    if message is None or message.get("state") == REMOVED:
        return None
    res = db[MESSAGES].update_one(
        {"_id": message_id, "state": {"$ne": REMOVED}},
        {
            "$set": {
                "state": REMOVED,
                "text": "",
                "removed_by": by,
                "removed_reason": reason[:200],
                "removed_at": now(),
            }
        },
    )
    return message if res.modified_count == 1 else None


def mute_nickname(db: Database[Doc], room_id: str, nickname: str) -> bool:
    """The nickname may stay and read but not post in this room (any case of it)."""
    res = db[ROOMS].update_one(
        {"_id": room_id, "closed_at": None}, {"$addToSet": {"muted": nick_key(nickname)}}
    )
    return res.modified_count == 1


def mute_clients(db: Database[Doc], room_id: str, clients: list[str]) -> bool:
    """Mute the clients (salted client keys, never addresses) behind a muted nickname: any
    connection of theirs is refused messages and images in this room, under any nickname.
    True if a client was added."""
    wanted = sorted({c for c in clients if c})
    if not wanted:
        return False
    res = db[ROOMS].update_one(
        {"_id": room_id, "closed_at": None},
        {"$addToSet": {"muted_clients": {"$each": wanted}}},
    )
    return res.modified_count == 1


def withdraw_message(db: Database[Doc], message_id: str, reason: str) -> bool:
    """A visible image message whose image is no longer ``cleared`` (deleted by its owner,
    hidden by reports, held or removed by a reviewer) leaves the room for good: it becomes
    ``removed`` with ``removed_by`` = ``image_status``, so history and the image route treat
    it as gone. Should a reviewer clear the image again later, the message does not come back
    (the poster may post it again). True if this call withdrew it."""
    res = db[MESSAGES].update_one(
        {"_id": message_id, "state": VISIBLE},
        {
            "$set": {
                "state": REMOVED,
                "removed_by": BY_IMAGE_STATUS,
                "removed_reason": reason[:200],
                "removed_at": now(),
            }
        },
    )
    return res.modified_count == 1


def close_room(
    db: Database[Doc], room_id: str, *, by: str, reason: str, retention_s: float = 3600.0
) -> bool:
    """End a room now (``by``: owner, moderator, expired, idle). Its messages and members are
    deleted by the rooms sweeper; the room document lingers ``retention_s`` (to answer
    "this room has ended") and then goes by TTL."""
    at = now()
    res = db[ROOMS].update_one(
        {"_id": room_id, "closed_at": None},
        {
            "$set": {
                "closed_at": at,
                "closed_by": by,
                "closed_reason": reason[:200],
                "doc_expires_at": at + timedelta(seconds=retention_s),
            }
        },
    )
    return res.modified_count == 1


def room_image_ids(db: Database[Doc], room_id: str) -> list[str]:
    """Images posted in a room (any state), for releasing their keep when it ends."""
    cursor = db[MESSAGES].find({"room_id": room_id, "image_id": {"$ne": None}}, {"image_id": 1})
    return [str(d["image_id"]) for d in cursor if d.get("image_id")]


def room_summary(db: Database[Doc], room_id: str) -> dict[str, Any] | None:
    """What a moderator sees of a room: name, visibility, state, counts."""
    room = db[ROOMS].find_one({"_id": room_id})
    if room is None:
        return None
    return {
        "room_id": room_id,
        "name": room.get("name", ""),
        "public": bool(room.get("public")),
        "closed": room.get("closed_at") is not None,
        "members": db[MEMBERS].count_documents({"room_id": room_id}),
        "muted": list(room.get("muted") or []),
    }


# --- the review side: reading and settling room reports ---------------------------------------

CONTEXT_MESSAGES = 5


def get_room_report(db: Database[Doc], report_id: str) -> Doc | None:
    return db[REPORTS].find_one({"_id": report_id})


def open_room_report_stats(db: Database[Doc]) -> tuple[int, datetime | None]:
    """How many room reports are open, and when the oldest was filed."""
    count = db[REPORTS].count_documents({"state": OPEN})
    oldest = db[REPORTS].find_one(
        {"state": OPEN}, {"created_at": 1}, sort=[("created_at", ASCENDING)]
    )
    return count, (oldest or {}).get("created_at")


def open_reports_in_room(db: Database[Doc], room_id: str, limit: int = 500) -> list[Doc]:
    return list(db[REPORTS].find({"room_id": room_id, "state": OPEN}).limit(limit))


def reopen_room_report(db: Database[Doc], report: Doc) -> bool:
    """Undo ``settle_room_report`` when the decision's move failed. Should a new report of the
    message have opened meanwhile, this one stays open beside it under a key of its own."""
    unset = {"action": "", "decided_by": "", "decided_at": "", "decision_reason": ""}
    for key in (f"open:{report['message_id']}", f"reopened:{report['_id']}"):
        try:
            res = db[REPORTS].update_one(
                {"_id": report["_id"], "state": {"$ne": OPEN}},
                {"$set": {"state": OPEN, "open_key": key}, "$unset": unset},
            )
        except DuplicateKeyError:
            continue
        return res.modified_count == 1
    return False


def messages_before(
    db: Database[Doc], room_id: str, at: datetime, limit: int = CONTEXT_MESSAGES
) -> list[Doc]:
    """The ``limit`` messages of the room just before ``at``, oldest first (context for a
    moderator; the caller decides what of them to show)."""
    cursor = (
        db[MESSAGES]
        .find({"room_id": room_id, "at": {"$lt": at}})
        .sort([("at", DESCENDING)])
        .limit(limit)
    )
    return list(reversed(list(cursor)))
