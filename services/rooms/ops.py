"""Rooms, joins and text messages over the ports: plain blocking functions (run them in a worker
thread), no HTTP or WebSocket here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.rooms import domain, metrics
from services.rooms.domain import Action, Costs, FrameError
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.shared import roommod
from services.shared.errors import RateLimited
from services.shared.mongo import Doc
from services.shared.repos import now
from services.shared.roomrepo import aware
from services.shared.tokens import new_id, new_token, same_hash, token_hash

OWNER_KEY_MAX = 256


def costs_of(settings: RoomsSettings) -> Costs:
    return Costs(
        join=settings.rooms_join_cost,
        message=settings.rooms_message_cost,
        image=settings.rooms_image_cost,
        create=settings.rooms_create_cost,
        report=settings.rooms_report_cost,
    )


def charge(
    p: Ports, costs: Costs, client: str, action: Action, *, frame: bool = True, fatal: bool = False
) -> None:
    """Spend the action's points from the client's budget, or refuse (error frame / 429)."""
    allowance = p.limiter.hit(client, costs.of(action))
    if allowance.allowed:
        return
    metrics.RATE_LIMITED.labels(action.value).inc()
    message = "Too much at once from your connection. Wait a moment."
    if frame:
        raise FrameError(
            message, code="rate_limited", fatal=fatal, retry_after=allowance.retry_after_s
        )
    raise RateLimited(message, retry_after_s=allowance.retry_after_s)


@dataclass(frozen=True)
class Created:
    room_id: str
    slug: str
    owner_token: str
    expires_at: datetime
    public: bool
    name: str


def create_room(
    p: Ports,
    settings: RoomsSettings,
    salt: bytes,
    *,
    name: Any,
    public: bool,
    lifetime_s: Any,
    client: str,
) -> Created:
    clean = domain.room_name(name)
    life = domain.lifetime(lifetime_s, settings.rooms_min_lifetime_s, settings.rooms_max_lifetime_s)
    charge(p, costs_of(settings), client, Action.CREATE, frame=False)
    at = now()
    expires = at + timedelta(seconds=life)
    room_id, slug, token = new_id(), secrets.token_urlsafe(16), new_token()
    p.rooms.insert(
        {
            "_id": room_id,
            "slug": slug,
            "name": clean,
            "public": bool(public),
            "created_at": at,
            "expires_at": expires,
            "idle_until": domain.idle_deadline(at, settings.rooms_idle_ttl_s, expires),
            "closed_at": None,
            "closed_reason": None,
            "closed_by": None,
            "purged_at": None,
            "owner_token_hash": token_hash(salt, token),
            "muted": [],
            "kicked": [],
            # Backstop if no sweeper ever ends it; close_room brings it forward.
            "doc_expires_at": expires + timedelta(seconds=settings.rooms_record_retention_s),
        }
    )
    metrics.ROOMS_CREATED.labels("public" if public else "private").inc()
    return Created(room_id, slug, token, expires, bool(public), clean)


def describe(p: Ports, room: Doc, *, members: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "slug": room["slug"],
        "name": room.get("name", ""),
        "public": bool(room.get("public")),
        "expires_at": domain.iso(room.get("expires_at")),
        "idle_until": domain.iso(room.get("idle_until")),
    }
    if members:
        out["members"] = p.members.count(str(room["_id"]))
    return out


def public_rooms(p: Ports, settings: RoomsSettings) -> list[dict[str, Any]]:
    return [describe(p, r) for r in p.rooms.public_live(now(), settings.rooms_list_max)]


def live_room(p: Ports, slug: str) -> Doc:
    return domain.check_live(p.rooms.by_slug(slug), now())


@dataclass(frozen=True)
class Joined:
    room: Doc
    nickname: str
    key: str
    tripcode: str | None
    welcome: dict[str, Any]
    owner: bool = False  # the join proved the room's owner key


def proves_owner(room: Doc, salt: bytes, raw: Any) -> bool:
    """The join frame's ``owner_key`` opens this room (a wrong or missing key: not the owner)."""
    if not isinstance(raw, str) or not raw or len(raw) > OWNER_KEY_MAX or not domain.encodable(raw):
        return False
    return same_hash(str(room.get("owner_token_hash", "-")), token_hash(salt, raw))


def join(
    p: Ports,
    settings: RoomsSettings,
    salt: bytes,
    *,
    slug: str,
    frame: dict[str, Any],
    client: str,
    conn_id: str,
) -> Joined:
    charge(p, costs_of(settings), client, Action.JOIN)
    at = now()
    room = p.rooms.by_slug(slug)
    if room is None:
        raise FrameError("No room has this address.", code="room_not_found", fatal=True)
    if domain.end_reason(room, at) is not None:
        raise FrameError("This room has ended.", code="room_ended", fatal=True)
    nickname = domain.nickname(frame.get("nickname"))
    tripcode = domain.tripcode(salt, frame.get("secret"))
    owner = proves_owner(room, salt, frame.get("owner_key"))
    # A kick bars the kicked member's client key a while, whatever nickname it tries next;
    # the owner (who may share that address: a household, an office, carrier-grade NAT) gets
    # in by proving the owner key.
    if not owner and domain.kicked_until(room, client, at) is not None:
        raise FrameError("The room's owner removed you.", code="kicked", fatal=True)
    room_id, key = str(room["_id"]), domain.nick_key(nickname)
    claimed = p.members.claim(
        {
            "_id": p.members.member_id(room_id, key),
            "room_id": room_id,
            "nickname": nickname,
            "nick_key": key,
            "tripcode": tripcode,
            "client": client,
            "owner": owner,
            "conn": conn_id,
            "joined_at": at,
            "seen_at": at,
            "expires_at": aware(room["expires_at"], at) + timedelta(minutes=5),
        },
        stale_before=at - timedelta(seconds=settings.rooms_member_stale_s),
    )
    if not claimed:
        raise FrameError(
            "Someone here already uses this nickname. Choose another.", code="nickname_taken"
        )
    since = at - timedelta(seconds=settings.rooms_replay_window_s)
    history = [
        message_frame(m, room["slug"])
        for m in p.messages.recent_visible(room_id, since, settings.rooms_replay_max)
    ]
    members = [
        {"nickname": m.get("nickname", ""), "tripcode": m.get("tripcode")}
        for m in p.members.in_room(room_id)
    ]
    welcome = {
        "type": "welcome",
        "you": {"nickname": nickname, "tripcode": tripcode},
        "owner": owner,
        "members": members,
        "history": history,
        "room": {
            "name": room.get("name", ""),
            "public": bool(room.get("public")),
            "expires_at": domain.iso(room.get("expires_at")),
        },
    }
    return Joined(room, nickname, key, tripcode, welcome, owner)


def leave(p: Ports, room_id: str, key: str, conn_id: str) -> bool:
    return p.members.release(room_id, key, conn_id)


def message_frame(doc: Doc, slug: str) -> dict[str, Any]:
    base = {
        "id": str(doc["_id"]),
        "nickname": doc.get("nickname", ""),
        "tripcode": doc.get("tripcode"),
        "at": domain.iso(doc.get("at")),
    }
    if doc.get("kind") == "image":
        mid = base["id"]
        return {
            "type": "image",
            **base,
            "url": f"/r/{slug}/images/{mid}",
            "thumb_url": f"/r/{slug}/thumbs/{mid}",
        }
    return {"type": "message", **base, "text": doc.get("text", "")}


@dataclass(frozen=True)
class Poster:
    room_id: str
    slug: str
    nickname: str
    key: str
    tripcode: str | None
    client: str


def message_doc(poster: Poster, expires_at: Any, at: datetime, **fields: Any) -> Doc:
    return {
        "_id": new_id(),
        "room_id": poster.room_id,
        "nickname": poster.nickname,
        "nick_key": poster.key,
        "tripcode": poster.tripcode,
        "at": at,
        "expires_at": expires_at,
        **fields,
    }


def post_text(
    p: Ports,
    settings: RoomsSettings,
    poster: Poster,
    raw: Any,
    expires_at: Any,
    push_idle: bool,
) -> dict[str, Any]:
    text = domain.message_text(raw, settings.rooms_max_text)
    charge(p, costs_of(settings), poster.client, Action.MESSAGE)
    at = now()
    doc = message_doc(
        poster, expires_at, at, kind="text", text=text, image_id=None, state=roommod.VISIBLE
    )
    p.messages.insert(doc)
    if push_idle:
        p.rooms.push_idle(
            poster.room_id, domain.idle_deadline(at, settings.rooms_idle_ttl_s, expires_at)
        )
    metrics.MESSAGES.labels("text").inc()
    return message_frame(doc, poster.slug)
