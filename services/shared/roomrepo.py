"""Repositories of the rooms collections (names and document shapes fixed by ``roommod``):
rooms, their members (one document per nickname) and their messages. Moderation moves
(remove, mute, close, reports) stay in ``roommod``; these are the rooms service's own reads and
writes. Races are settled by one conditional ``update_one`` (or a unique ``_id``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.shared import roommod
from services.shared.mongo import Doc
from services.shared.repos import now


class RoomRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db[roommod.ROOMS]

    def ensure_indexes(self) -> None:
        self.col.create_index("slug", unique=True)
        self.col.create_index([("public", ASCENDING), ("closed_at", ASCENDING)])
        self.col.create_index([("closed_at", ASCENDING), ("purged_at", ASCENDING)])
        self.col.create_index("doc_expires_at", expireAfterSeconds=0)

    def insert(self, doc: Doc) -> None:
        self.col.insert_one(doc)

    def by_slug(self, slug: str) -> Doc | None:
        return self.col.find_one({"slug": slug}) if 0 < len(slug) <= 64 else None

    def get(self, room_id: str) -> Doc | None:
        return self.col.find_one({"_id": room_id})

    def many(self, room_ids: list[str]) -> list[Doc]:
        return list(self.col.find({"_id": {"$in": room_ids}})) if room_ids else []

    def public_live(self, at: datetime, limit: int) -> list[Doc]:
        query = {"public": True, "closed_at": None, "expires_at": {"$gt": at}}
        cursor = self.col.find(query).sort("expires_at", ASCENDING).limit(limit)
        return [d for d in cursor if _after(d.get("idle_until"), at)]

    def push_idle(self, room_id: str, until: datetime) -> None:
        self.col.update_one({"_id": room_id, "closed_at": None}, {"$max": {"idle_until": until}})

    def kick(self, room_id: str, client: str, until: datetime) -> bool:
        res = self.col.update_one(
            {"_id": room_id, "closed_at": None},
            {"$push": {"kicked": {"client": client, "until": until}}},
        )
        return res.modified_count == 1

    def ended_unclosed(self, at: datetime, limit: int = 100) -> list[Doc]:
        """Live rooms past their hard end or their idle deadline (the sweeper closes them)."""
        query: dict[str, Any] = {
            "closed_at": None,
            "$or": [{"expires_at": {"$lte": at}}, {"idle_until": {"$lte": at}}],
        }
        return list(self.col.find(query).limit(limit))

    def closed_unpurged(self, limit: int = 100) -> list[Doc]:
        query = {"closed_at": {"$ne": None}, "purged_at": None}
        return list(self.col.find(query).limit(limit))

    def mark_purged(self, room_id: str) -> bool:
        res = self.col.update_one(
            {"_id": room_id, "closed_at": {"$ne": None}, "purged_at": None},
            {"$set": {"purged_at": now()}},
        )
        return res.modified_count == 1


class MemberRepo:
    """``_id`` = "<room_id>:<nick_key>": one holder of a nickname per room, in any process."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db[roommod.MEMBERS]

    def ensure_indexes(self) -> None:
        self.col.create_index("room_id")
        self.col.create_index("expires_at", expireAfterSeconds=0)

    @staticmethod
    def member_id(room_id: str, key: str) -> str:
        return f"{room_id}:{key}"

    def claim(self, doc: Doc, stale_before: datetime) -> bool:
        """Take the nickname: new, or held by a connection not seen since ``stale_before``
        (its process died). False if someone live holds it."""
        try:
            self.col.insert_one(doc)
            return True
        except DuplicateKeyError:
            pass
        res = self.col.update_one(
            {"_id": doc["_id"], "seen_at": {"$lt": stale_before}},
            {"$set": {k: v for k, v in doc.items() if k != "_id"}},
        )
        return res.modified_count == 1

    def get(self, room_id: str, key: str) -> Doc | None:
        return self.col.find_one({"_id": self.member_id(room_id, key)})

    def by_ids(self, member_ids: list[str]) -> list[Doc]:
        if not member_ids:
            return []
        return list(
            self.col.find({"_id": {"$in": member_ids}}, {"room_id": 1, "client": 1, "owner": 1})
        )

    def release(self, room_id: str, key: str, conn: str) -> bool:
        res = self.col.delete_one({"_id": self.member_id(room_id, key), "conn": conn})
        return res.deleted_count == 1

    def remove(self, room_id: str, key: str) -> bool:
        return self.col.delete_one({"_id": self.member_id(room_id, key)}).deleted_count == 1

    def touch(self, member_ids: list[str], at: datetime) -> None:
        if member_ids:
            self.col.update_many({"_id": {"$in": member_ids}}, {"$set": {"seen_at": at}})

    def in_room(self, room_id: str, limit: int = 500) -> list[Doc]:
        return list(self.col.find({"room_id": room_id}).sort("joined_at", ASCENDING).limit(limit))

    def count(self, room_id: str) -> int:
        return self.col.count_documents({"room_id": room_id})

    def delete_room(self, room_id: str) -> int:
        return self.col.delete_many({"room_id": room_id}).deleted_count


class MessageRepo:
    def __init__(self, db: Database[Doc]) -> None:
        self.col = db[roommod.MESSAGES]

    def ensure_indexes(self) -> None:
        self.col.create_index([("room_id", ASCENDING), ("at", DESCENDING)])
        self.col.create_index("image_id")
        self.col.create_index([("state", ASCENDING), ("at", ASCENDING)])
        self.col.create_index("expires_at", expireAfterSeconds=0)

    def insert(self, doc: Doc) -> None:
        self.col.insert_one(doc)

    def get(self, message_id: str) -> Doc | None:
        return self.col.find_one({"_id": message_id}) if len(message_id) <= 64 else None

    def recent_visible(self, room_id: str, since: datetime, limit: int) -> list[Doc]:
        query = {"room_id": room_id, "state": roommod.VISIBLE, "at": {"$gte": since}}
        cursor = self.col.find(query).sort("at", DESCENDING).limit(limit)
        return list(reversed(list(cursor)))

    def image_elsewhere(self, image_id: str, room_id: str) -> bool:
        """The image was already posted in another room (one room per image)."""
        query = {"image_id": image_id, "room_id": {"$ne": room_id}}
        return self.col.find_one(query, {"_id": 1}) is not None

    def scanning_for_image(self, image_id: str) -> list[Doc]:
        return list(self.col.find({"image_id": image_id, "state": roommod.SCANNING}))

    def for_image(self, image_id: str) -> list[Doc]:
        return list(self.col.find({"image_id": image_id}))

    def settle(self, message_id: str, state: str) -> bool:
        """scanning → visible or refused, once."""
        res = self.col.update_one(
            {"_id": message_id, "state": roommod.SCANNING}, {"$set": {"state": state}}
        )
        return res.modified_count == 1

    def scanning_older_than(self, at: datetime, limit: int = 100) -> list[Doc]:
        query = {"state": roommod.SCANNING, "at": {"$lte": at}}
        return list(self.col.find(query).limit(limit))

    def visible_images(self, room_ids: list[str], limit: int = 5000) -> list[Doc]:
        """The visible image messages of these rooms (id, room and image only)."""
        if not room_ids:
            return []
        query = {"room_id": {"$in": room_ids}, "kind": "image", "state": roommod.VISIBLE}
        return list(self.col.find(query, {"room_id": 1, "image_id": 1}).limit(limit))

    def removed_since(self, room_ids: list[str], since: datetime) -> list[Doc]:
        if not room_ids:
            return []
        query = {
            "room_id": {"$in": room_ids},
            "state": roommod.REMOVED,
            "removed_at": {"$gte": since},
        }
        return list(self.col.find(query, {"room_id": 1}))

    def delete_room(self, room_id: str) -> int:
        return self.col.delete_many({"room_id": room_id}).deleted_count


def _after(value: Any, at: datetime) -> bool:
    if not isinstance(value, datetime):
        return True
    moment = value if value.tzinfo else value.replace(tzinfo=at.tzinfo)
    return moment > at


def aware(value: datetime, like: datetime) -> datetime:
    """A stored datetime as an aware one (the database may hand back naive UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=like.tzinfo)


def retention_end(end: datetime, retention_s: float) -> datetime:
    return end + timedelta(seconds=retention_s)
