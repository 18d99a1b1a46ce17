"""The review service's ports: repositories, the evidence vault, the event publisher and the
room collections (the rooms queue)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pymongo.database import Database

from services.review.accounts import AccountStore
from services.review.rooms import RoomStore
from services.review.settings import ReviewSettings
from services.shared.accountrepo import AccountRepo, LoginFailureRepo, SessionRepo
from services.shared.jobrepo import JobRepo
from services.shared.kafka import KafkaPublisher, Publisher
from services.shared.linkrepo import LinkRepo
from services.shared.mongo import BlobStore, Doc
from services.shared.repos import AuditRepo, BankRepo, ImageRepo, ReportRepo


@dataclass
class Ports:
    images: ImageRepo
    reports: ReportRepo
    banks: BankRepo
    vault: BlobStore
    audit: AuditRepo
    publisher: Publisher
    jobs: JobRepo
    links: LinkRepo  # counts for the job view; an overturned removal's links serve again
    blobs: BlobStore  # image bytes, for the reviewer's preview
    accounts: AccountStore  # reviewer accounts, sessions and failed-login counters
    rooms: RoomStore  # room reports, messages and rooms (the rooms queue)


def ports_opener(settings: ReviewSettings) -> Callable[[Database[Doc]], Ports]:
    def open_ports(db: Database[Doc]) -> Ports:
        ports = Ports(
            ImageRepo(db),
            ReportRepo(db),
            BankRepo(db),
            BlobStore(db, "evidence"),
            AuditRepo(db),
            KafkaPublisher(settings),
            JobRepo(db),
            LinkRepo(db),
            BlobStore(db),
            AccountStore(AccountRepo(db), SessionRepo(db), LoginFailureRepo(db), AuditRepo(db)),
            RoomStore(db),
        )
        ports.accounts.ensure_indexes()
        ports.jobs.ensure_indexes()
        ports.reports.ensure_indexes()
        ports.banks.ensure_indexes()
        ports.audit.ensure_indexes()
        ports.rooms.ensure_indexes()
        return ports

    return open_ports
