"""How every service hands out image bytes: the type we encoded (never the client's), no
sniffing, no scripts, no referrer, never cached by anyone but the viewer's browser."""

from __future__ import annotations

from fastapi.responses import Response

IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Disposition": "inline",
}


def image_response(data: bytes, content_type: str, *, max_age_s: int = 0) -> Response:
    """Image bytes with IMAGE_HEADERS. ``max_age_s`` > 0 lets the viewer's own browser keep
    them briefly (a room's or the gallery's thumbnails, which count no views); the default
    ``no-store`` is for view-limited links."""
    headers = dict(IMAGE_HEADERS)
    if max_age_s > 0:
        headers["Cache-Control"] = f"private, max-age={max_age_s}"
    return Response(data, media_type=content_type, headers=headers)
