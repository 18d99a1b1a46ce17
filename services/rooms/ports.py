"""The rooms service's ports: repositories over one MongoDB database, opened in lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pymongo.database import Database

from services.rooms.settings import RoomsSettings
from services.shared import roommod
from services.shared.jobrepo import JobRepo
from services.shared.kafka import ensure_topics_best_effort
from services.shared.linkrepo import LinkRepo
from services.shared.mongo import BlobStore, Doc
from services.shared.ratelimit import RateLimiter
from services.shared.repos import ImageRepo, ReportRepo
from services.shared.roomrepo import MemberRepo, MessageRepo, RoomRepo


@dataclass
class Ports:
    db: Database[Doc]  # roommod's moves take the database
    rooms: RoomRepo
    members: MemberRepo
    messages: MessageRepo
    images: ImageRepo
    blobs: BlobStore
    reports: ReportRepo  # image reports (the review console's reports queue)
    links: LinkRepo  # file_report's signature; rooms never report by link token
    jobs: JobRepo
    limiter: RateLimiter  # one weighted budget per client for joins, messages, images...


def open_ports(db: Database[Doc], settings: RoomsSettings) -> Ports:
    ports = Ports(
        db=db,
        rooms=RoomRepo(db),
        members=MemberRepo(db),
        messages=MessageRepo(db),
        images=ImageRepo(db),
        blobs=BlobStore(db),
        reports=ReportRepo(db),
        links=LinkRepo(db),
        jobs=JobRepo(db),
        limiter=RateLimiter(
            db["rate_limits"],
            name="rooms",
            limit=settings.rooms_rate_limit,
            window_s=settings.rooms_rate_window_s,
        ),
    )
    ports.rooms.ensure_indexes()
    ports.members.ensure_indexes()
    ports.messages.ensure_indexes()
    ports.limiter.ensure_indexes()
    ports.jobs.ensure_indexes()
    roommod.ensure_indexes(db)
    ensure_topics_best_effort(settings)
    return ports


def ports_opener(settings: RoomsSettings) -> Callable[[Database[Doc]], Ports]:
    return lambda db: open_ports(db, settings)
