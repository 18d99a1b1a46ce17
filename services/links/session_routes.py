"""End-of-session links: the uploader's open page keeps its link alive.

The page holds a WebSocket and sends a small message every ``session_heartbeat_s``; each one
extends the link's life to now + ``session_grace_s``. When the page goes away (tab closed, phone
locked, network lost) the heartbeats stop and the link dies once the grace period has passed.
No cookies: the page proves itself with the session key it got when the link was made. A plain
POST heartbeat serves API clients and pages without WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from services.links import metrics, owner
from services.links.options import SessionBeat
from services.links.ports import Ports
from services.links.settings import LinksSettings
from services.shared.errors import DomainError

log = logging.getLogger(__name__)
MAX_MESSAGE = 512
# WebSocket close codes in the private range: 4000 + the HTTP status that would have been sent.
CLOSE_NOT_FOUND = 4404
CLOSE_GONE = 4410
CLOSE_BAD = 4400


def session_router(settings: LinksSettings, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()

    def beat(link_id: str, key: str) -> datetime:
        try:
            until = owner.heartbeat(
                links=ports().links,
                salt=salt,
                link_id=link_id,
                session_key=key,
                grace_s=settings.session_grace_s,
            )
        except DomainError as exc:
            metrics.HEARTBEATS.labels(exc.code).inc()
            raise
        metrics.HEARTBEATS.labels("alive").inc()
        return until

    @router.post("/api/v1/links/{link_id}/heartbeat")
    async def heartbeat(link_id: str, body: SessionBeat) -> dict[str, object]:
        until = await run_in_threadpool(beat, link_id, body.session_key)
        return {
            "link_id": link_id,
            "alive_until": until.isoformat(),
            "interval_s": settings.session_heartbeat_s,
        }

    @router.websocket("/api/v1/links/{link_id}/session")
    async def session(socket: WebSocket, link_id: str) -> None:
        await socket.accept()
        metrics.SESSIONS_OPEN.inc()
        every = settings.session_heartbeat_s
        patience = every * 2 + 5
        key: str | None = None
        try:
            while True:
                raw = await asyncio.wait_for(socket.receive_text(), timeout=patience)
                if key is None:
                    key = _key_of(raw)
                    if key is None:
                        await _close(socket, CLOSE_BAD, "first message must carry session_key")
                        return
                try:
                    until = await run_in_threadpool(beat, link_id, key)
                except DomainError as exc:
                    code = CLOSE_GONE if exc.status in (410, 451) else CLOSE_NOT_FOUND
                    await socket.send_text(json.dumps({"code": exc.code, "message": exc.message}))
                    await _close(socket, code, exc.code)
                    return
                await socket.send_text(
                    json.dumps(
                        {
                            "alive_until": until.isoformat(),
                            "interval_s": settings.session_heartbeat_s,
                        }
                    )
                )
        except (WebSocketDisconnect, TimeoutError):
            return  # the page went away: the link lives out its grace period, then dies
        except Exception:
            log.exception("session socket failed")
            await _close(socket, 1011, "server error")
        finally:
            metrics.SESSIONS_OPEN.dec()

    return router


def _key_of(raw: str) -> str | None:
    if len(raw) > MAX_MESSAGE:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    key = value.get("session_key") if isinstance(value, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= 128 else None


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):  # already closed by the client
        await socket.close(code=code, reason=reason[:120])
