"""What every HTTP service does the same way: the lifespan that opens the database (or takes
ports handed in by tests), readiness, error mapping, metrics, and running under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import uvicorn
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pymongo.database import Database

from services.shared.http import install_error_handlers
from services.shared.logs import configure_logging
from services.shared.memory import limit_malloc_arenas
from services.shared.metrics import instrument
from services.shared.mongo import Doc, MongoProbe, database, make_client
from services.shared.readiness import BrokerProbe, Dependencies
from services.shared.settings import CommonSettings, HttpServiceSettings

P = TypeVar("P")


@dataclass
class Service(Generic[P]):
    """The running service's ports (repositories, publisher...). Routes read them per request."""

    _ports: list[P] = field(default_factory=list)
    _probe: list[MongoProbe] = field(default_factory=list)
    _deps: list[Dependencies] = field(default_factory=list)

    @property
    def ports(self) -> P:
        return self._ports[0]

    def ready(self) -> dict[str, bool]:
        """The database is asked now (it gives up within about a second); the broker's
        answer is the dependency thread's last one, so a hung broker never slows this."""
        if not self._deps:
            return {"database": False, "broker": False}
        deps = self._deps[0]
        return {"database": deps.check("database"), "broker": deps.last("broker")}


def create_service_app(
    *,
    name: str,
    settings: CommonSettings,
    service: Service[P],
    open_ports: Callable[[Database[Doc]], P],
    given: P | None = None,
    background: Callable[[P], Coroutine[Any, Any, None]] | None = None,
    close_ports: Callable[[P], None] | None = None,
    inner_middleware: Callable[[FastAPI], None] | None = None,
    public_docs: bool = True,
) -> FastAPI:
    """``open_ports`` runs in a worker thread at start (it may create indexes); with ``given``
    (tests) no database client is opened. ``public_docs=False`` leaves out /docs, /redoc and
    /openapi.json (a service that needs a login serves its own, behind it)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = None
        probe = MongoProbe(settings)
        service._probe.append(probe)
        deps = Dependencies(
            name,
            {"database": probe, "broker": BrokerProbe(settings.kafka_bootstrap)},
            settings.dependency_check_interval_s,
        )
        deps.start()
        service._deps.append(deps)
        if given is None:
            client = make_client(settings)
            db = database(client, settings)
            service._ports.append(await run_in_threadpool(open_ports, db))
        else:
            service._ports.append(given)
        task = asyncio.create_task(background(service.ports)) if background else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if close_ports is not None:
                close_ports(service._ports[0])
            service._ports.clear()
            await asyncio.to_thread(service._deps.pop().stop)
            service._probe.pop().close()
            if client is not None:
                client.close()

    docs: dict[str, Any] = (
        {} if public_docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    )
    app = FastAPI(title=f"ChatPic {name}", version="1", lifespan=lifespan, **docs)
    install_error_handlers(app)
    if inner_middleware is not None:
        inner_middleware(app)  # added first, so the metrics middleware sees its answers too
    # The database is required; without the broker a service still answers (ingest keeps
    # uploads in its outbox; links, review and rooms serve from MongoDB): only degraded.
    instrument(app, name, service.ready, required=("database",), version=settings.build_version)
    return app


def serve(
    name: str, settings: HttpServiceSettings, app: Callable[[], FastAPI], **uvicorn_options: Any
) -> None:
    """Run one service under uvicorn with our logging; ``uvicorn_options`` adds server options
    (e.g. ``ws_max_size``)."""
    configure_logging(name, settings.log_level)
    limit_malloc_arenas()  # before the thread pool exists: see services.shared.memory
    uvicorn.run(
        app(),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        **uvicorn_options,
    )
