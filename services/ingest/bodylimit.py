"""Refuse oversized upload bodies while they stream in, before they are parsed or spooled.

A declared Content-Length over the cap is answered 413 at once, without reading the body; a body
without one (chunked) is counted as it arrives and cut off as soon as it passes the cap."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.metrics import UPLOADS
from services.shared.errors import IntakeError
from services.shared.pages import Pages


def too_large(cap: int) -> IntakeError:
    return IntakeError(
        "The file is larger than the upload limit.",
        code="too_large",
        status=413,
        limit="bytes",
        maximum=cap,
    )


class BodyLimit:
    def __init__(self, app: ASGIApp, *, cap: int, slack: int, paths: frozenset[str]) -> None:
        """``cap``: the file limit people are told; ``slack``: room for the multipart framing."""
        self.app = app
        self.cap = cap
        self.allowed = cap + slack
        self.paths = paths
        self.pages = Pages("services.shared")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        html = b"text/html" in headers.get(b"accept", b"") and not scope["path"].startswith("/api/")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.allowed:
            await self._refuse(send, html)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.allowed:
                    refused = True
                    await self._refuse(send, html)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once we answered 413, whatever the app says is dropped
                await send(message)

        await self.app(scope, counted, guarded_send)

    async def _refuse(self, send: Send, html: bool) -> None:
        UPLOADS.labels("refused", "too_large").inc()
        error = too_large(self.cap)
        if html:
            page = self.pages.env.get_template("error.html")
            body = page.render(title="Too large", message=error.message, code=error.code).encode()
            content_type = b"text/html; charset=utf-8"
        else:
            body = json.dumps(error.to_dict(), separators=(",", ":")).encode()
            content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
