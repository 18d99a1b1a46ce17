"""The links sweeper on the real database: bytes (GridFS files and chunks) really go, and only
when nothing may show the image any more; moderation's images are never touched.

Most tests copy one real uploaded, scanned and cleared image into a private database of their
own, so the links service's own background sweeper (which works on the shared database) can
never race them, and time can be moved forward by passing ``now``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect

from services.links.sweeper import TTL_INDEXES, SweepResult, ensure_ttl_indexes, sweep_once
from services.shared.mongo import BlobStore, Doc
from services.shared.repos import ImageRepo
from tests.live import Live
from tests.unit.corpus import corpus_path

UNLINKED_TTL_S = 600.0
RETENTION_S = 7 * 24 * 3600.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def link_doc(image_id: str, *, expires_at: datetime, **extra: Any) -> Doc:
    """A link document as the contract describes it (the token hash is a stand-in)."""
    created_at = min(expires_at, utcnow()) - timedelta(minutes=5)
    doc: Doc = {
        "_id": uuid.uuid4().hex,
        "link_id": uuid.uuid4().hex,
        "image_id": image_id,
        "created_at": created_at,
        "expires_at": expires_at,
        "alive_until": expires_at,
        "max_views": 3,
        "remaining": 3,
        "views": 0,
        "max_views_per_viewer": None,
        "password_hash": None,
        "end_of_session": False,
        "session_hash": None,
        "purge_at": expires_at + timedelta(days=7),
    }
    doc.update(extra)
    return doc


def same_ms(a: datetime, b: datetime) -> bool:
    """The database keeps milliseconds."""
    return abs(a - b) < timedelta(milliseconds=1)


def stored(db: Any, blob_ids: list[str]) -> tuple[int, int]:
    """(GridFS files, GridFS chunks) still held for these blob ids."""
    oids = [ObjectId(b) for b in blob_ids]
    files = db["blobs.files"].count_documents({"_id": {"$in": oids}})
    chunks = db["blobs.chunks"].count_documents({"files_id": {"$in": oids}})
    return files, chunks


def upload_cleared(live: Live, name: str) -> str:
    resp = live.upload(corpus_path(name).read_bytes(), name)
    assert resp.status_code == 202, resp.text
    image_id = str(resp.json()["image_id"])
    assert live.wait_status(image_id) == "cleared"
    return image_id


@dataclass
class World:
    """One real cleared image, alone in a private database."""

    db: Any
    images: ImageRepo
    blobs: BlobStore
    image_id: str
    blob_ids: list[str]

    def doc(self) -> Doc:
        doc = self.images.get(self.image_id)
        assert doc is not None
        return doc

    def sweep(
        self,
        at: datetime | None = None,
        *,
        links_col: Any = None,
        blobs: Any = None,
        unlinked_ttl_s: float = UNLINKED_TTL_S,
    ) -> SweepResult:
        return sweep_once(
            self.images,
            links_col if links_col is not None else self.db["links"],
            self.db["tickets"],
            blobs if blobs is not None else self.blobs,
            at or utcnow(),
            unlinked_ttl_s,
            RETENTION_S,
        )

    def add_link(self, **fields: Any) -> Doc:
        doc = link_doc(self.image_id, **fields)
        self.db["links"].insert_one(doc)
        assert self.images.note_link(self.image_id, doc["alive_until"])
        return doc

    def stored(self) -> tuple[int, int]:
        return stored(self.db, self.blob_ids)

    def assert_purged(self, reason: str, status: str = "expired") -> None:
        doc = self.doc()
        assert doc["status"] == status and doc["purge_reason"] == reason
        assert doc["purged_at"] is not None
        assert doc["blob_id"] is None and doc["thumb_blob_id"] is None
        assert doc["doc_expires_at"] == doc["purged_at"] + timedelta(seconds=RETENTION_S)
        assert self.stored() == (0, 0), "bytes must be deleted, not just hidden"

    def assert_intact(self, status: str = "cleared") -> None:
        doc = self.doc()
        assert doc["status"] == status and doc.get("purged_at") is None
        assert doc["blob_id"] == self.blob_ids[0]
        files, chunks = self.stored()
        assert files == 2 and chunks >= 2
        assert self.blobs.get(self.blob_ids[0])  # still readable


@pytest.fixture(scope="module")
def source(live: Live) -> Doc:
    """A real upload, sanitised, scanned and cleared by the services."""
    image_id = upload_cleared(live, "DSCN0010.jpg")
    doc = live.db.images.find_one({"_id": image_id})
    blobs = BlobStore(live.db)
    return {
        **doc,
        "data": blobs.get(doc["blob_id"]),
        "thumb": blobs.get(doc["thumb_blob_id"]),
    }


@pytest.fixture
def world(live: Live, source: Doc) -> Iterator[World]:
    name = f"sweeper_{uuid.uuid4().hex[:12]}"
    db = live.mongo[name]
    blobs = BlobStore(db)
    # The shared database's own sweeper may already have scheduled the source: start afresh.
    fresh = ("data", "thumb", "purge_check_at", "purge_gen", "linked_at")
    doc = {k: v for k, v in source.items() if k not in fresh}
    doc["blob_id"] = blobs.put(source["data"], doc["content_type"])
    doc["thumb_blob_id"] = blobs.put(source["thumb"], doc.get("thumb_content_type", "image/jpeg"))
    db["images"].insert_one(doc)
    try:
        yield World(db, ImageRepo(db), blobs, doc["_id"], [doc["blob_id"], doc["thumb_blob_id"]])
    finally:
        live.mongo.drop_database(name)


class AfterFind:
    """A collection whose ``find`` reads, then lets something happen before the sweeper acts
    on what it read (the race window between the sweeper's read and its write)."""

    def __init__(self, col: Any, meanwhile: Callable[[], None]) -> None:
        self.col = col
        self.meanwhile = meanwhile

    def find(self, *args: Any, **kwargs: Any) -> list[Doc]:
        found = list(self.col.find(*args, **kwargs))
        self.meanwhile()
        return found


class DiesOnDelete:
    """A blob store on a database that goes away after the status flip."""

    def delete(self, blob_id: str) -> None:
        raise AutoReconnect("connection lost mid-purge")


def test_ttl_indexes_exist_with_zero_delay(live: Live) -> None:
    ensure_ttl_indexes(live.db)
    ensure_ttl_indexes(live.db)  # idempotent: every service start calls it
    for collection, key in TTL_INDEXES:
        indexes = live.db[collection].index_information().values()
        ttl = [i for i in indexes if i["key"] == [(key, 1)] and "expireAfterSeconds" in i]
        assert len(ttl) == 1, (collection, list(indexes))
        assert ttl[0]["expireAfterSeconds"] == 0


def test_ended_link_deletes_the_bytes_on_the_shared_database(live: Live) -> None:
    """End to end on the database the services use: the image's only link expired."""
    image_id = upload_cleared(live, "DSCN0021.jpg")
    images = ImageRepo(live.db)
    doc = images.get(image_id)
    assert doc is not None
    blob_ids = [doc["blob_id"], doc["thumb_blob_id"]]
    files, chunks = stored(live.db, blob_ids)
    assert files == 2 and chunks >= 2

    ended = utcnow() - timedelta(seconds=1)
    link = link_doc(image_id, expires_at=ended, remaining=3)
    live.db.links.insert_one(link)
    assert images.note_link(image_id, ended)

    sweep_once(
        images,
        live.db["links"],
        live.db["tickets"],
        BlobStore(live.db),
        utcnow(),
        3600,  # long: other tests' unlinked images stay
        RETENTION_S,
    )
    doc = images.get(image_id)
    assert doc is not None
    assert doc["status"] == "expired" and doc["purge_reason"] == "links_ended"
    assert doc["purged_at"] is not None and doc["blob_id"] is None
    assert stored(live.db, blob_ids) == (0, 0)
    assert live.ingest.get(f"/api/v1/images/{image_id}").json()["status"] == "expired"
    # A link made too late is refused by the image, so the caller can tell the owner.
    assert not images.note_link(image_id, utcnow() + timedelta(hours=1))


def test_live_link_defers_then_its_end_purges(world: World) -> None:
    now = utcnow()
    link = world.add_link(expires_at=now + timedelta(minutes=10))
    assert same_ms(world.doc()["purge_check_at"], link["alive_until"])
    assert world.sweep(now) == SweepResult()  # not due before the link ends: not even read

    assert world.images.touch_purge_check(world.image_id)  # e.g. another link was revoked
    result = world.sweep()
    assert (result.purged, result.deferred) == (0, 1)
    world.assert_intact()
    assert same_ms(world.doc()["purge_check_at"], link["alive_until"])
    assert world.sweep(now + timedelta(minutes=5)) == SweepResult()

    result = world.sweep(now + timedelta(minutes=10, seconds=1))
    assert result.purged == 1 and result.by_reason == {"links_ended": 1}
    world.assert_purged("links_ended")


def test_used_up_link_purges_at_once_after_touch(world: World) -> None:
    now = utcnow()
    link = world.add_link(expires_at=now + timedelta(hours=1), remaining=1)
    assert world.sweep() == SweepResult()
    world.db["links"].update_one({"_id": link["_id"]}, {"$set": {"remaining": 0, "views": 3}})
    assert world.images.touch_purge_check(world.image_id)
    result = world.sweep()
    assert result.by_reason == {"links_ended": 1}
    world.assert_purged("links_ended")


def test_unused_ticket_keeps_the_bytes_until_it_lapses(world: World) -> None:
    now = utcnow()
    link = world.add_link(expires_at=now + timedelta(hours=1), remaining=0, views=3)
    ticket = {
        "_id": uuid.uuid4().hex,
        "link_id": link["link_id"],
        "image_id": world.image_id,
        "expires_at": now + timedelta(seconds=60),
        "used_at": None,
        "created_at": now,
    }
    world.db["tickets"].insert_one(ticket)
    assert world.images.touch_purge_check(world.image_id)  # the reveal spent the last view

    assert world.sweep().deferred == 1
    world.assert_intact()
    assert same_ms(world.doc()["purge_check_at"], ticket["expires_at"])

    world.db["tickets"].update_one({"_id": ticket["_id"]}, {"$set": {"used_at": now}})
    assert world.sweep(now + timedelta(seconds=61)).by_reason == {"links_ended": 1}
    world.assert_purged("links_ended")


def test_unlinked_image_waits_for_the_ttl_then_goes(world: World) -> None:
    scanned_at = world.doc()["scanned_at"]
    assert world.sweep(scanned_at + timedelta(seconds=5)).deferred == 1
    world.assert_intact()
    assert world.doc()["purge_check_at"] == scanned_at + timedelta(seconds=UNLINKED_TTL_S)

    result = world.sweep(scanned_at + timedelta(seconds=UNLINKED_TTL_S + 1))
    assert result.by_reason == {"unlinked": 1}
    world.assert_purged("unlinked")


def test_owner_deletion_purges_and_stays_deleted(world: World) -> None:
    world.add_link(expires_at=utcnow() + timedelta(hours=1))
    assert world.images.mark_deleted(world.image_id, ["cleared"])
    result = world.sweep()
    assert result.by_reason == {"deleted": 1}
    world.assert_purged("deleted", status="deleted")
    assert world.sweep() == SweepResult()  # done: never looked at again


def test_taken_down_image_is_never_touched(world: World) -> None:
    world.add_link(expires_at=utcnow() - timedelta(seconds=1))  # every link has ended
    assert world.images.take_down(world.image_id, {"reason": "report", "actor": "test"})
    assert world.sweep() == SweepResult()
    assert world.sweep(utcnow() + timedelta(days=30)) == SweepResult()
    world.assert_intact(status="removed")


def test_takedown_between_read_and_purge_wins(world: World) -> None:
    world.add_link(expires_at=utcnow() - timedelta(seconds=1))

    def take_down() -> None:
        assert world.images.take_down(world.image_id, {"reason": "bank match", "actor": "test"})

    result = world.sweep(links_col=AfterFind(world.db["links"], take_down))
    assert (result.purged, result.raced) == (0, 1)
    world.assert_intact(status="removed")


def test_link_created_between_read_and_purge_wins(world: World) -> None:
    """The sweeper read no live link; a link is made before it flips the status: no purge."""
    world.add_link(expires_at=utcnow() - timedelta(seconds=1))
    new_end = utcnow() + timedelta(hours=1)

    def create_link() -> None:
        world.db["links"].insert_one(link_doc(world.image_id, expires_at=new_end))
        assert world.images.note_link(world.image_id, new_end)

    result = world.sweep(links_col=AfterFind(world.db["links"], create_link))
    assert (result.purged, result.raced) == (0, 1)
    world.assert_intact()
    # $min: the sweeper looks again by the new link's end at the latest
    assert world.doc()["purge_check_at"] <= new_end + timedelta(milliseconds=1)
    assert world.sweep().purged == 0  # the new link keeps it


def test_revocation_between_read_and_defer_is_not_overwritten(world: World) -> None:
    """The sweeper saw a live link and will defer; the owner revokes it meanwhile: the sweeper's
    deferral must not push the look past the revocation."""
    link = world.add_link(expires_at=utcnow() + timedelta(hours=1))

    def revoke() -> None:
        world.db["links"].update_one(
            {"_id": link["_id"]}, {"$set": {"revoked": True, "ended_reason": "revoked"}}
        )
        assert world.images.touch_purge_check(world.image_id)

    assert world.images.touch_purge_check(world.image_id)  # due now (say, another link ended)
    result = world.sweep(links_col=AfterFind(world.db["links"], revoke))
    assert (result.deferred, result.raced) == (0, 1)
    assert world.sweep().by_reason == {"links_ended": 1}
    world.assert_purged("links_ended")


def test_purge_interrupted_after_the_flip_is_finished_next_pass(world: World) -> None:
    world.add_link(expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(AutoReconnect):
        world.sweep(blobs=cast(Any, DiesOnDelete()))
    doc = world.doc()
    assert doc["status"] == "expired" and doc.get("purged_at") is None  # nothing serves it
    assert world.stored()[0] == 2

    result = world.sweep()
    assert result.by_reason == {"links_ended": 1}
    world.assert_purged("links_ended")


def test_bytes_already_gone_still_completes(world: World) -> None:
    world.add_link(expires_at=utcnow() - timedelta(seconds=1))
    for blob_id in world.blob_ids:
        world.blobs.delete(blob_id)
    assert world.sweep().by_reason == {"links_ended": 1}
    world.assert_purged("links_ended")
