"""The rooms HTTP API: create, list and describe rooms; the owner's kick and close; reports
of messages. Thin: each route calls one blocking domain function in a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.rooms import moderation, ops
from services.rooms.hub import Hub
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.rooms.socket_routes import connection_client_key
from services.shared.clients import parse_networks
from services.shared.errors import Forbidden
from services.shared.reports import MAX_DETAILS, ReportReason


class CreateRoom(BaseModel):
    # Checked by the domain, so a bad name or lifetime gets its own code (422 name_invalid,
    # lifetime_invalid) rather than the generic invalid_request.
    name: Any = Field(
        default=None,
        description="1 to 60 ordinary characters",
        json_schema_extra={"type": "string"},
    )
    public: bool = False
    lifetime_s: Any = Field(
        default=None,
        description="seconds, within the service's caps",
        json_schema_extra={"type": "integer"},
    )


class KickRequest(BaseModel):
    nickname: str = Field(max_length=64)


class RoomReport(BaseModel):
    reason: ReportReason
    details: str = Field(default="", max_length=MAX_DETAILS)


def bearer(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or len(value) > 256:
        raise Forbidden(
            "Send the owner key as 'Authorization: Bearer <key>'.", code="owner_key_missing"
        )
    return value.strip()


def room_urls(settings: RoomsSettings, slug: str) -> dict[str, str]:
    base = settings.rooms_public_url.rstrip("/")
    ws = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return {"url": f"{base}/r/{slug}", "websocket_url": f"{ws}/api/v1/rooms/{slug}/ws"}


def created_body(settings: RoomsSettings, made: ops.Created) -> dict[str, Any]:
    return {
        "room_id": made.room_id,
        "slug": made.slug,
        "name": made.name,
        "public": made.public,
        **room_urls(settings, made.slug),
        "owner_token": made.owner_token,
        "expires_at": made.expires_at.isoformat(),
    }


def api_router(settings: RoomsSettings, hub: Hub, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()
    proxies = parse_networks(settings.trusted_proxies.split(","))

    def client(request: Request, scope: str = "rooms") -> str:
        return connection_client_key(request, salt, proxies, scope)

    @router.post("/api/v1/rooms", status_code=201)
    async def create(req: CreateRoom, request: Request) -> dict[str, Any]:
        made = await run_in_threadpool(
            lambda: ops.create_room(
                ports(),
                settings,
                salt,
                name=req.name,
                public=req.public,
                lifetime_s=req.lifetime_s,
                client=client(request),
            )
        )
        return created_body(settings, made)

    @router.get("/api/v1/rooms")
    async def list_rooms() -> dict[str, Any]:
        return {"rooms": await run_in_threadpool(ops.public_rooms, ports(), settings)}

    @router.get("/api/v1/rooms/{slug}")
    async def room_info(slug: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            p = ports()
            return {**ops.describe(p, ops.live_room(p, slug)), **room_urls(settings, slug)}

        return await run_in_threadpool(read)

    @router.post("/api/v1/rooms/{slug}/kick")
    async def kick(
        slug: str, req: KickRequest, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        token = bearer(authorization)
        name = await run_in_threadpool(
            moderation.kick,
            ports(),
            settings,
            salt,
            slug,
            token,
            req.nickname,
            hub.emit_threadsafe,
        )
        return {"kicked": name, "for_s": settings.rooms_kick_ban_s}

    @router.post("/api/v1/rooms/{slug}/close")
    async def close(
        slug: str, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        token = bearer(authorization)
        await run_in_threadpool(
            moderation.close_by_owner, ports(), salt, slug, token, hub.emit_threadsafe
        )
        return {"closed": True}

    @router.post("/api/v1/rooms/{slug}/messages/{message_id}/report", status_code=201)
    async def report(
        slug: str, message_id: str, req: RoomReport, request: Request
    ) -> dict[str, Any]:
        report_id = await run_in_threadpool(
            lambda: moderation.report(
                ports(),
                settings,
                salt,
                slug=slug,
                message_id=message_id[:64],
                reason=req.reason,
                details=req.details,
                reporter=client(request, "report"),
                budget=client(request),
            )
        )
        return {"report_id": report_id, "status": "open"}

    return router
