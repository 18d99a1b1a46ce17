"""The room WebSocket: ``/api/v1/rooms/{slug}/ws``. The client joins with its first frame,
then sends text and image frames; every frame it gets is JSON (see the README's protocol).
Refusals are error frames: recoverable ones keep the socket open, the others close it. Before
the join too: a taken or invalid nickname leaves the socket open for another try, but a client
that gets ``MAX_JOIN_ERRORS`` refusals before joining (or does not join within
``JOIN_TIMEOUT_S``) is cut off (close 1008)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pymongo.errors import PyMongoError
from starlette.requests import HTTPConnection

from services.rooms import domain, images, metrics, ops
from services.rooms.domain import FrameError
from services.rooms.hub import Conn, Hub, RoomView
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.shared.clients import Network, client_address, client_key, parse_networks
from services.shared.repos import now
from services.shared.roomrepo import aware
from services.shared.tokens import new_id

log = logging.getLogger(__name__)
JOIN_TIMEOUT_S = 30.0
MAX_JOIN_ERRORS = 5  # refusals before a join after which the socket is closed
# Open sockets one client may hold on one process (joined or not): enough for a few tabs and
# devices behind one address, not for holding hundreds of idle sockets.
MAX_SOCKETS_PER_CLIENT = 16
IDLE_PUSH_EVERY_S = 10.0
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011


def connection_client_key(
    conn: HTTPConnection, salt: bytes, proxies: tuple[Network, ...], scope: str
) -> str:
    """``request_client_key`` for any connection (it is typed for plain requests): the salted
    key of the reduced address, X-Forwarded-For believed only from trusted proxies."""
    peer = conn.client.host if conn.client else None
    address = client_address(peer, conn.headers.get("x-forwarded-for"), proxies)
    return client_key(salt, address, scope)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def parse_frame(raw: str | None, max_bytes: int) -> dict[str, Any]:
    if raw is None:
        raise FrameError("Send JSON text frames.", code="text_frames_only")
    if len(raw.encode()) > max_bytes:
        raise FrameError("This frame is too large.", code="frame_too_large")
    try:
        frame = json.loads(raw)
    except ValueError:
        frame = None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("Frames are JSON objects with a type.", code="malformed_frame")
    return frame


def socket_router(settings: RoomsSettings, hub: Hub, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()
    proxies = parse_networks(settings.trusted_proxies.split(","))
    max_bytes = settings.rooms_max_frame_bytes

    async def send_and_close(socket: WebSocket, frame: dict[str, Any], code: int) -> None:
        with contextlib.suppress(Exception):
            await socket.send_text(json.dumps(frame))
            await socket.close(code)

    async def send_frame(socket: WebSocket, frame: dict[str, Any]) -> bool:
        try:
            await socket.send_text(json.dumps(frame))
        except Exception:
            return False
        return True

    async def join_once(
        socket: WebSocket, slug: str, client: str, deadline: float
    ) -> tuple[str, ops.Joined] | None:
        """One join frame and its answer; None if the peer went away. Refusals raise."""
        left = max(deadline - time.monotonic(), 0.0)
        message = await asyncio.wait_for(socket.receive(), timeout=left)
        if message["type"] == "websocket.disconnect":
            return None
        frame = parse_frame(message.get("text"), max_bytes)
        if frame["type"] != "join":
            raise FrameError("Join first.", code="join_first")
        conn_id = new_id()
        result = await run_in_threadpool(
            lambda: ops.join(
                ports(),
                settings,
                salt,
                slug=slug,
                frame=frame,
                client=client,
                conn_id=conn_id,
            )
        )
        return conn_id, result

    async def joined(socket: WebSocket, slug: str, client: str) -> Conn | None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        errors = 0
        while True:
            try:
                got = await join_once(socket, slug, client, deadline)
            except FrameError as exc:
                metrics.REFUSED.labels(exc.code).inc()
                errors += 1
                if exc.fatal or errors >= MAX_JOIN_ERRORS:
                    await send_and_close(socket, exc.frame(), CLOSE_POLICY)
                    return None
                if not await send_frame(socket, exc.frame()):  # open: try another nickname
                    return None
                continue
            except (WebSocketDisconnect, TimeoutError, RuntimeError):
                with contextlib.suppress(Exception):
                    await socket.close(CLOSE_POLICY)
                return None
            except PyMongoError:
                await send_and_close(
                    socket, _error("unavailable", "Briefly unavailable. Try again."), CLOSE_ERROR
                )
                return None
            return None if got is None else await enter(socket, slug, client, *got)

    async def enter(
        socket: WebSocket, slug: str, client: str, conn_id: str, result: ops.Joined
    ) -> Conn:
        room = result.room
        conn = Conn(
            socket=socket,
            conn_id=conn_id,
            room_id=str(room["_id"]),
            slug=slug,
            nickname=result.nickname,
            key=result.key,
            tripcode=result.tripcode,
            client=client,
            queue=hub.new_queue(),
            owner=result.owner,
        )
        await socket.send_text(json.dumps(result.welcome))
        view = RoomView(
            slug=slug,
            expires_at=room["expires_at"],
            muted=set(room.get("muted") or []),
            muted_clients={str(c) for c in room.get("muted_clients") or [] if c},
        )
        hub.add(conn, view)
        hub.broadcast(
            conn.room_id, {"type": "join", "nickname": conn.nickname, "tripcode": conn.tripcode}
        )
        return conn

    def poster(conn: Conn) -> ops.Poster:
        return ops.Poster(
            conn.room_id, conn.slug, conn.nickname, conn.key, conn.tripcode, conn.client
        )

    async def on_text(conn: Conn, view: RoomView, frame: dict[str, Any]) -> None:
        push = time.monotonic() - view.idle_pushed_at > IDLE_PUSH_EVERY_S
        if push:
            view.idle_pushed_at = time.monotonic()
        out = await run_in_threadpool(
            ops.post_text,
            ports(),
            settings,
            poster(conn),
            frame.get("text"),
            view.expires_at,
            push,
        )
        hub.broadcast(conn.room_id, out)

    async def on_image(conn: Conn, view: RoomView, frame: dict[str, Any]) -> None:
        p = ports()
        doc = await run_in_threadpool(
            images.post_image, p, settings, salt, poster(conn), frame, view.expires_at
        )
        hub.deliver(conn.room_id, {"type": "image_pending", "id": str(doc["_id"])}, conn.key)
        out: list[tuple[str, dict[str, Any], str | None]] = []
        await run_in_threadpool(
            images.settle_image,
            p,
            str(doc["image_id"]),
            "post",
            lambda r, f, t: out.append((r, f, t)),
        )
        for room_id, item, to in out:
            hub.broadcast(room_id, item, to)

    async def on_frame(conn: Conn, raw: str | None) -> None:
        frame = parse_frame(raw, max_bytes)
        kind = frame["type"]
        view = hub.view(conn.room_id)
        if view is None or view.closed_by is not None:
            raise FrameError("This room has ended.", code="room_ended", fatal=True)
        if kind == "ping":
            hub.deliver(conn.room_id, {"type": "pong"}, conn.key)
            return
        if kind not in ("message", "image"):
            code = "already_joined" if kind == "join" else "unknown_frame"
            raise FrameError("This frame is not understood here.", code=code)
        if aware(view.expires_at, now()) <= now():
            raise FrameError("This room has ended.", code="room_ended", fatal=True)
        if hub.is_muted(conn):
            raise FrameError("A moderator muted you in this room.", code="muted")
        if kind == "message":
            await on_text(conn, view, frame)
        else:
            await on_image(conn, view, frame)

    async def serve_frames(conn: Conn) -> None:
        while not conn.ending:
            message = await conn.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await on_frame(conn, message.get("text"))
            except FrameError as exc:
                metrics.REFUSED.labels(exc.code).inc()
                hub.deliver(conn.room_id, exc.frame(), conn.key)
                if exc.fatal:
                    conn.end(None)
            except PyMongoError:
                metrics.REFUSED.labels("unavailable").inc()
                hub.deliver(
                    conn.room_id,
                    _error("unavailable", "Briefly unavailable. Try again."),
                    conn.key,
                )
            except Exception:
                log.exception("room frame failed")
                hub.deliver(
                    conn.room_id, _error("internal_error", "Something went wrong."), conn.key
                )

    open_sockets: dict[str, int] = {}

    @router.websocket("/api/v1/rooms/{slug}/ws")
    async def room_socket(socket: WebSocket, slug: str) -> None:
        await socket.accept()
        client = connection_client_key(socket, salt, proxies, "rooms")
        if open_sockets.get(client, 0) >= MAX_SOCKETS_PER_CLIENT:
            metrics.REFUSED.labels("too_many_connections").inc()
            frame = _error("too_many_connections", "Too many open connections from here.")
            await send_and_close(socket, frame, CLOSE_POLICY)
            return
        open_sockets[client] = open_sockets.get(client, 0) + 1
        try:
            await one_socket(socket, slug, client)
        finally:
            left = open_sockets.get(client, 1) - 1
            if left > 0:
                open_sockets[client] = left
            else:
                open_sockets.pop(client, None)

    async def one_socket(socket: WebSocket, slug: str, client: str) -> None:
        conn = await joined(socket, slug[:64], client)
        if conn is None:
            return
        try:
            await serve_frames(conn)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            view = hub.view(conn.room_id)
            ended = view is not None and view.closed_by is not None
            held = hub.remove(conn)
            if conn.writer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.writer, timeout=2)
            released = False
            with contextlib.suppress(Exception):
                released = await run_in_threadpool(
                    ops.leave, ports(), conn.room_id, conn.key, conn.conn_id
                )
            if held and released and not ended:
                hub.broadcast(conn.room_id, {"type": "leave", "nickname": conn.nickname})

    return router


__all__ = ["domain", "socket_router"]
