"""The links service's ports: repositories over one MongoDB database, opened in lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pymongo.database import Database

from services.links.passwords import PasswordCheck
from services.links.settings import LinksSettings
from services.links.sweeper import ensure_ttl_indexes
from services.shared.jobrepo import JobRepo
from services.shared.linkrepo import LinkRepo, TicketRepo, ViewerRepo
from services.shared.mongo import BlobStore, Doc
from services.shared.ratelimit import RateLimiter
from services.shared.repos import ImageRepo, ReportRepo


@dataclass
class Ports:
    images: ImageRepo
    links: LinkRepo
    viewers: ViewerRepo
    tickets: TicketRepo
    blobs: BlobStore
    reports: ReportRepo
    limiter: RateLimiter  # reports per client
    passwords: PasswordCheck  # password guesses per client and link
    jobs: JobRepo  # review jobs: reports aggregate here, appeals open here


def ports_opener(settings: LinksSettings) -> Callable[[Database[Doc]], Ports]:
    def open_ports(db: Database[Doc]) -> Ports:
        limits = db["rate_limits"]
        ports = Ports(
            images=ImageRepo(db),
            links=LinkRepo(db),
            viewers=ViewerRepo(db),
            tickets=TicketRepo(db),
            blobs=BlobStore(db),
            reports=ReportRepo(db),
            limiter=RateLimiter(
                limits,
                name="report",
                limit=settings.report_rate_limit,
                window_s=settings.report_rate_window_s,
            ),
            jobs=JobRepo(db),
            passwords=PasswordCheck(
                RateLimiter(
                    limits,
                    name="password",
                    limit=settings.password_attempts,
                    window_s=settings.password_window_s,
                )
            ),
        )
        ensure_ttl_indexes(db)
        ports.links.ensure_indexes()
        ports.tickets.ensure_indexes()
        ports.limiter.ensure_indexes()
        ports.jobs.ensure_indexes()
        return ports

    return open_ports
