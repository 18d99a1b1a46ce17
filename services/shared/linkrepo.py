"""Share links, their viewers and their reveal tickets. Every counter moves with one conditional
``update_one`` (check ``modified_count``): no read-modify-write anywhere. Tokens, tickets and
viewer identities are stored only as keyed hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.shared.mongo import Doc
from services.shared.repos import now


def live_filter(at: datetime) -> dict[str, Any]:
    """A link that may still be viewed at ``at`` (``alive_until`` never exceeds ``expires_at``)."""
    return {
        "revoked": {"$ne": True},
        "remaining": {"$gt": 0},
        "expires_at": {"$gt": at},
        "alive_until": {"$gt": at},
    }


class LinkRepo:
    """Links keyed by the hash of their token. A public link also carries
    ``gallery: {category, public_id, listed_at}``; ``gallery_claims`` (``_id`` = image id) holds
    the one gallery entry an image may ever have."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["links"]
        self.claims = db["gallery_claims"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("image_id", ASCENDING)])
        self.col.create_index([("link_id", ASCENDING)], unique=True)
        self.col.create_index([("gallery.public_id", ASCENDING)])
        self.col.create_index([("gallery.category", ASCENDING), ("gallery.listed_at", DESCENDING)])
        self.col.create_index([("gallery.listed_at", DESCENDING)])
        # One link per creation request (the form's one-time key, the API's Idempotency-Key),
        # kept as a keyed hash on the link itself: it goes when the link's record is purged.
        self.col.create_index(
            [("request_hash", ASCENDING)],
            unique=True,
            partialFilterExpression={"request_hash": {"$type": "string"}},
        )

    def claim_gallery(self, image_id: str, link_id: str, purge_at: datetime) -> bool:
        """The image's one gallery entry, for ``link_id``; False if the image already had one
        (the unique ``_id`` decides a race). The claim is dropped together with its link's
        record (TTL on ``purge_at``), long after the image's bytes are gone."""
        try:
            self.claims.insert_one(
                {"_id": image_id, "link_id": link_id, "created_at": now(), "purge_at": purge_at}
            )
        except DuplicateKeyError:
            return False
        return True

    def release_gallery(self, image_id: str, link_id: str) -> None:
        """A claim whose link was never stored (the insert failed) is given back."""
        self.claims.delete_one({"_id": image_id, "link_id": link_id})

    def by_public_id(self, public_id: str) -> Doc | None:
        return self.col.find_one({"gallery.public_id": public_id})

    def gallery_batch(self, query: dict[str, Any], limit: int) -> list[Doc]:
        """Gallery entries matching ``query``, newest first (ties by public id, descending)."""
        order = [("gallery.listed_at", DESCENDING), ("gallery.public_id", DESCENDING)]
        return list(self.col.find(query).sort(order).limit(limit))

    def insert(self, doc: Doc) -> bool:
        """Store a new link. False (nothing stored) if its ``request_hash`` already made a link:
        the unique index decides a race between two posts of the same form."""
        try:
            self.col.insert_one(
                {**doc, "views": 0, "remaining": doc["max_views"], "created_at": now()}
            )
        except DuplicateKeyError:
            if doc.get("request_hash") and self.by_request(str(doc["request_hash"])) is not None:
                return False
            raise
        return True

    def by_request(self, request_hash: str) -> Doc | None:
        """The link a creation request (its keyed hash) already made, if any."""
        return self.col.find_one({"request_hash": request_hash})

    def get(self, token_hash: str) -> Doc | None:
        return self.col.find_one({"_id": token_hash})

    def by_link_id(self, link_id: str) -> Doc | None:
        return self.col.find_one({"link_id": link_id})

    def for_image(self, image_id: str) -> list[Doc]:
        return list(self.col.find({"image_id": image_id}).sort("created_at", ASCENDING))

    def redeem(self, token_hash: str) -> bool:
        """Consume one view atomically: one conditional update, no read-modify-write."""
        t = now()
        res = self.col.update_one(
            {"_id": token_hash, **live_filter(t)},
            {"$inc": {"views": 1, "remaining": -1}, "$set": {"last_view_at": t}},
        )
        return res.modified_count == 1

    def refund(self, token_hash: str) -> None:
        """Give back a view taken by a reveal that then could not be completed."""
        self.col.update_one({"_id": token_hash}, {"$inc": {"views": -1, "remaining": 1}})

    def heartbeat(self, link_id: str, session_hash: str, alive_until: datetime) -> bool:
        """Keep an end-of-session link alive. A link whose session already lapsed stays dead."""
        t = now()
        res = self.col.update_one(
            {
                "link_id": link_id,
                "session_hash": session_hash,
                "revoked": {"$ne": True},
                "alive_until": {"$gt": t},
            },
            {"$set": {"alive_until": alive_until, "heartbeat_at": t}},
        )
        return res.modified_count == 1

    def end_session(self, link_id: str, session_hash: str, until: datetime) -> None:
        """The uploader's page said goodbye: shorten the link's life to the grace period."""
        self.col.update_one(
            {"link_id": link_id, "session_hash": session_hash, "alive_until": {"$gt": until}},
            {"$set": {"alive_until": until}},
        )

    def revoke(self, link_id: str, image_id: str, reason: str) -> bool:
        """End one link. An owner's revocation is also remembered on a link a takedown already
        ended (``owner_revoked``), so an overturned removal never brings it back."""
        if reason == "revoked":
            self.col.update_one(
                {"link_id": link_id, "image_id": image_id}, {"$set": {"owner_revoked": True}}
            )
        res = self.col.update_one(
            {"link_id": link_id, "image_id": image_id, "revoked": {"$ne": True}},
            {"$set": {"revoked": True, "ended_reason": reason, "ended_at": now()}},
        )
        return res.modified_count == 1

    def revoke_all(self, image_id: str, reason: str) -> int:
        res = self.col.update_many(
            {"image_id": image_id, "revoked": {"$ne": True}},
            {"$set": {"revoked": True, "ended_reason": reason, "ended_at": now()}},
        )
        return res.modified_count

    def restore_removed(self, image_id: str) -> int:
        """An overturned removal: the links the takedown ended serve again (those still within
        their time and views; the owner's own revocations stay)."""
        res = self.col.update_many(
            {
                "image_id": image_id,
                "revoked": True,
                "ended_reason": "removed",
                "owner_revoked": {"$ne": True},
            },
            {"$set": {"revoked": False}, "$unset": {"ended_reason": "", "ended_at": ""}},
        )
        self.col.update_many(  # revoked by their owner meanwhile: they stay ended, as revoked
            {"image_id": image_id, "ended_reason": "removed", "owner_revoked": True},
            {"$set": {"ended_reason": "revoked"}},
        )
        return res.modified_count

    def count_for_image(self, image_id: str, at: datetime) -> tuple[int, int]:
        """(links ever made, links that may still be viewed) for one image."""
        total = self.col.count_documents({"image_id": image_id})
        live = self.col.count_documents({"image_id": image_id, **live_filter(at)}) if total else 0
        return total, live


class ViewerRepo:
    """Views per viewer. A viewer is HMAC(secret, link id + reduced client address): never a raw
    address, and the same person gets unrelated ids on different links."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["link_viewers"]

    def take(self, viewer: str, link_id: str, limit: int, purge_at: datetime) -> bool:
        """One more view for this viewer, if under ``limit``: a conditional increment, or the
        first view as an insert (a racing first view loses on the unique _id and retries)."""
        for _ in range(2):
            res = self.col.update_one(
                {"_id": viewer, "count": {"$lt": limit}}, {"$inc": {"count": 1}}
            )
            if res.modified_count == 1:
                return True
            if self.col.find_one({"_id": viewer}, {"_id": 1}) is not None:
                return False
            try:
                self.col.insert_one(
                    {"_id": viewer, "link_id": link_id, "count": 1, "purge_at": purge_at}
                )
                return True
            except DuplicateKeyError:
                continue
        return False

    def give_back(self, viewer: str) -> None:
        self.col.update_one({"_id": viewer, "count": {"$gt": 0}}, {"$inc": {"count": -1}})


class TicketRepo:
    """Single-use, short-lived permissions to fetch an image's bytes once, made by a reveal."""

    def __init__(self, db: Database[Doc]) -> None:
        self.col = db["tickets"]

    def ensure_indexes(self) -> None:
        self.col.create_index([("image_id", ASCENDING)])

    def insert(
        self,
        ticket_hash: str,
        link_id: str,
        image_id: str,
        expires_at: datetime,
        *,
        last: bool = False,
    ) -> None:
        """``last``: the reveal that made it may have spent the link's last view."""
        self.col.insert_one(
            {
                "_id": ticket_hash,
                "link_id": link_id,
                "image_id": image_id,
                "expires_at": expires_at,
                "used_at": None,
                "created_at": now(),
                "last": last,
            }
        )

    def get(self, ticket_hash: str) -> Doc | None:
        return self.col.find_one({"_id": ticket_hash})

    def use(self, ticket_hash: str) -> bool:
        t = now()
        res = self.col.update_one(
            {"_id": ticket_hash, "used_at": None, "expires_at": {"$gt": t}},
            {"$set": {"used_at": t}},
        )
        return res.modified_count == 1

    def discard(self, ticket_hash: str) -> None:
        self.col.delete_one({"_id": ticket_hash})

    def drop_for_link(self, link_id: str) -> int:
        return self.col.delete_many({"link_id": link_id, "used_at": None}).deleted_count

    def drop_for_image(self, image_id: str) -> int:
        return self.col.delete_many({"image_id": image_id, "used_at": None}).deleted_count
