"""Rooms HTTP and WebSocket transport: the app factory. Routes live in api_routes (HTTP API),
socket_routes (the room WebSocket) and page_routes (pages and image bytes).

The static files live under /rooms/static, not /static: behind one public hostname (see
deploy/k8s/ingress.yaml) /static belongs to ingest and every path under /rooms to rooms."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.rooms.api_routes import api_router
from services.rooms.background import background
from services.rooms.hub import Hub
from services.rooms.page_routes import page_router
from services.rooms.ports import Ports, ports_opener
from services.rooms.relay import RelayOut
from services.rooms.settings import RoomsSettings
from services.rooms.socket_routes import socket_router
from services.shared.kafka import KafkaPublisher, Publisher
from services.shared.pages import Pages
from services.shared.service import Service, create_service_app


def create_app(
    settings: RoomsSettings, ports: Ports | None = None, publisher: Publisher | None = None
) -> FastAPI:
    """Build the app. With ``ports`` given (tests), no database client is opened and no
    background work (consumers, sweeper) runs."""
    instance_id = settings.rooms_instance_id or secrets.token_hex(8)
    relay_out = RelayOut(publisher or KafkaPublisher(settings), instance_id)
    hub = Hub(instance_id, relay_out, settings.rooms_send_queue)
    service: Service[Ports] = Service()
    app = create_service_app(
        name="rooms",
        settings=settings,
        service=service,
        open_ports=ports_opener(settings),
        given=ports,
        background=None if ports is not None else background(settings, hub, relay_out),
        close_ports=lambda _: relay_out.publisher.close(),
    )
    static = StaticFiles(directory=Path(__file__).parent / "static")
    app.mount("/rooms/static", static, name="static")  # the templates name this prefix
    app.include_router(api_router(settings, hub, lambda: service.ports))
    app.include_router(socket_router(settings, hub, lambda: service.ports))
    app.include_router(page_router(settings, Pages("services.rooms"), lambda: service.ports))
    app.state.hub = hub
    return app
