"""Server-rendered pages (the room list with its create form, and the room page, which needs
JavaScript for the live part) and the image bytes of room messages."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.rooms import domain, images, metrics, ops
from services.rooms.ports import Ports
from services.rooms.settings import RoomsSettings
from services.rooms.socket_routes import connection_client_key
from services.shared.clients import parse_networks
from services.shared.errors import DomainError
from services.shared.imageserve import image_response
from services.shared.pages import Pages
from services.shared.repos import now


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_policy(settings: RoomsSettings) -> str:
    own = _origin(settings.rooms_public_url)
    ws = own.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    ingest = _origin(settings.ingest_public_url)
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src 'self' {ws} {ingest}; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


FORM_MAX_BYTES = 4096


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form, decoded strictly: bytes that are not UTF-8 are
    refused (``400 invalid_text``) instead of becoming U+FFFD replacement characters."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("", "application/x-www-form-urlencoded"):
        raise DomainError("Send the form urlencoded.", code="unsupported_form", status=415)
    raw = b""
    async for chunk in request.stream():  # stop reading at the cap, not after the whole body
        raw += chunk
        if len(raw) > FORM_MAX_BYTES:
            raise DomainError("This form is too large.", code="too_large", status=413)
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except UnicodeDecodeError as exc:
        raise domain.invalid_text("form") from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        if not domain.encodable(value):
            raise domain.invalid_text(key)
        fields.setdefault(key, value)
    return fields


def page_router(settings: RoomsSettings, pages: Pages, ports: Callable[[], Ports]) -> APIRouter:
    router = APIRouter()
    salt = settings.salt()
    proxies = parse_networks(settings.trusted_proxies.split(","))
    csp = {"Content-Security-Policy": page_policy(settings)}
    menu = domain.lifetime_menu(settings.rooms_min_lifetime_s, settings.rooms_max_lifetime_s)

    def listing(status: int = 200, error: DomainError | None = None) -> Response:
        rooms = ops.public_rooms(ports(), settings)
        return pages.render(
            "index.html",
            status,
            csp,
            rooms=rooms,
            lifetimes=menu,
            error=error,
            name_max=domain.NAME_MAX,
        )

    @router.api_route(
        "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    @router.api_route(
        "/rooms", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    async def index() -> Response:
        return await run_in_threadpool(listing)

    @router.post("/rooms/new", include_in_schema=False)
    async def create_form(request: Request) -> Response:
        client = connection_client_key(request, salt, proxies, "rooms")
        try:
            fields = await form_fields(request)
            lifetime_s = fields.get("lifetime_s", "")
            digits = lifetime_s.isascii() and lifetime_s.isdigit() and len(lifetime_s) <= 12
            life = int(lifetime_s) if digits else -1
            name, public = fields.get("name", ""), fields.get("public")
            made = await run_in_threadpool(
                lambda: ops.create_room(
                    ports(),
                    settings,
                    salt,
                    name=name,
                    public=public is not None,
                    lifetime_s=life,
                    client=client,
                )
            )
        except DomainError as exc:
            return await run_in_threadpool(listing, exc.status, exc)
        # The owner key travels in the fragment: the browser keeps it, no server sees it.
        return RedirectResponse(f"/r/{made.slug}#owner={made.owner_token}", status_code=303)

    @router.get("/r/{slug}", response_class=HTMLResponse, include_in_schema=False)
    async def room_page(slug: str) -> Response:
        def read() -> Response:
            room = ports().rooms.by_slug(slug)
            if room is None:
                return pages.render(
                    "gone.html", 404, csp, title="No room here", message="No room has this address."
                )
            if domain.end_reason(room, now()) is not None:
                return pages.render(
                    "gone.html",
                    410,
                    csp,
                    title="This room has ended",
                    message="Rooms are ephemeral: this one is gone, with everything said in it.",
                )
            return pages.render(
                "room.html",
                200,
                csp,
                room=room,
                slug=slug,
                ingest_url=settings.ingest_public_url.rstrip("/"),
                max_text=settings.rooms_max_text,
                expires_at=domain.iso(room.get("expires_at")),
            )

        return await run_in_threadpool(read)

    async def serve(slug: str, message_id: str, thumb: bool) -> Response:
        try:
            served = await run_in_threadpool(
                images.served_image, ports(), slug[:64], message_id[:64], thumb, now()
            )
        except DomainError as exc:
            metrics.IMAGES_SERVED.labels(exc.code).inc()
            raise
        metrics.IMAGES_SERVED.labels("served").inc()
        return image_response(
            served.data, served.content_type, max_age_s=settings.rooms_image_max_age_s
        )

    @router.get("/r/{slug}/images/{message_id}", include_in_schema=False)
    async def image(slug: str, message_id: str) -> Response:
        return await serve(slug, message_id, thumb=False)

    @router.get("/r/{slug}/thumbs/{message_id}", include_in_schema=False)
    async def thumb(slug: str, message_id: str) -> Response:
        return await serve(slug, message_id, thumb=True)

    return router
