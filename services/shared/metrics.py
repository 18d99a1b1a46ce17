"""HTTP RED metrics shared by every FastAPI service, the request id, and the /metrics,
/healthz, /readyz routes.

``ObservedRequests`` is plain ASGI middleware (no BaseHTTPMiddleware: that costs about a
millisecond per request and buffers streamed bodies through a task group). Per request it
- takes the inbound ``X-Request-ID`` if well-formed, else makes one, keeps it in the context
  (services.shared.tracing) for the log lines written meanwhile, and echoes it in the answer;
- counts ``chatpic_http_requests_total`` by route template and status class, observes
  ``chatpic_http_request_duration_seconds`` (to the end of the body, streamed bodies
  included) and tracks ``chatpic_http_in_flight_requests``;
- writes one access line (route template, never the raw path: it may carry a token).
WebSockets get the request id and one count and access line when the handshake is decided
(method ``WEBSOCKET``; 1xx accepted, 4xx refused); they are left out of the latency histogram
and the in-flight gauge, which are about requests, not connections that last minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.shared import tracing
from services.shared.opsmetrics import announce_build
from services.shared.readiness import readiness

access_log = logging.getLogger("chatpic.access")
QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
REQUEST_ID_HEADER = b"x-request-id"

HTTP_REQUESTS = Counter(
    "chatpic_http_requests_total",
    "HTTP requests by route template and status class.",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "chatpic_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["service", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("chatpic_http_in_flight_requests", "Requests being served.", ["service"])


def route_template(request: Request) -> str:
    return _template(request.app.router.routes, request.scope) or "unmatched"


def _template(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI keeps included routers whole
        if inner is not None:
            found = _template(inner.routes, scope)
            if found:
                return found
            continue
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
    return None


def _scope_template(scope: Scope) -> str:
    app = scope.get("app")
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", None)
    return (_template(routes, scope) if routes is not None else None) or "unmatched"


def _inbound_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == REQUEST_ID_HEADER:
            return bytes(value).decode("latin-1")
    return None


def _status_class(code: int) -> str:
    return f"{code // 100}xx"


def _with_id(message: Message, request_id: str) -> None:
    headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != REQUEST_ID_HEADER]
    message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id.encode())]


class ObservedRequests:
    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = tracing.accept_request_id(_inbound_id(scope))
        token = tracing.request_id.set(request_id)
        route = _scope_template(scope)
        if scope["type"] == "http":
            await self._http(scope, receive, send, route, request_id)
        else:
            await self._socket(scope, receive, send, route, request_id)
        # Only after a normal end: on an exception the id stays set for the error handler
        # outside (its "unhandled error" line names the request); each request has its own
        # task context, so nothing leaks into the next one.
        tracing.request_id.reset(token)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, route: str, request_id: str
    ) -> None:
        method = str(scope.get("method", ""))
        code: int | None = None

        async def observed_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
                _with_id(message, request_id)
            await send(message)

        start = time.perf_counter()
        in_flight = HTTP_IN_FLIGHT.labels(self.service)
        in_flight.inc()
        status = "5xx"
        try:
            await self.app(scope, receive, observed_send)
            # No answer at all: the client went away before one was sent.
            status = _status_class(code) if code is not None else "4xx"
        finally:
            elapsed = time.perf_counter() - start
            in_flight.dec()
            HTTP_REQUESTS.labels(self.service, route, method, status).inc()
            HTTP_LATENCY.labels(self.service, route).observe(elapsed)
            if route not in QUIET_ROUTES:
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "status_code": code if code is not None else 0,
                        "ms": round(elapsed * 1000, 1),
                        "request_id": request_id,
                    },
                )

    async def _socket(
        self, scope: Scope, receive: Receive, send: Send, route: str, request_id: str
    ) -> None:
        decided = False

        def count(code: int) -> None:
            nonlocal decided
            decided = True
            status = _status_class(code)
            HTTP_REQUESTS.labels(self.service, route, "WEBSOCKET", status).inc()
            access_log.info(
                "websocket",
                extra={
                    "method": "WEBSOCKET",
                    "route": route,
                    "status": status,
                    "status_code": code,
                    "request_id": request_id,
                },
            )

        async def observed_send(message: Message) -> None:
            if not decided:
                kind = message["type"]
                if kind == "websocket.accept":
                    _with_id(message, request_id)
                    count(101)
                elif kind == "websocket.close":
                    count(403)  # closed before accepting: the server refuses the handshake
                elif kind == "websocket.http.response.start":
                    count(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            if not decided:
                count(500)
            raise
        if not decided:
            count(403)  # returned without accepting: the server closes with 403


def instrument(
    app: FastAPI,
    service: str,
    ready: Callable[[], dict[str, bool]],
    required: Collection[str] = ("database",),
    version: str = "",
) -> None:
    """Add the request middleware plus /metrics, /healthz (alive) and /readyz (required
    dependencies answer; the others are reported as ``degraded``)."""
    app.add_middleware(ObservedRequests, service=service)
    announce_build(service, version)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        body = readiness(ready(), required)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)
