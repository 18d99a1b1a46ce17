"""HTTP RED metrics shared by every FastAPI service, and the /metrics, /healthz, /readyz routes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

access_log = logging.getLogger("chatpic.access")
QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})

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


def instrument(app: FastAPI, service: str, ready: Callable[[], dict[str, bool]]) -> None:
    """Add RED middleware plus /metrics, /healthz (alive) and /readyz (dependencies answer)."""

    @app.middleware("http")
    async def _red(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        route = route_template(request)
        start = time.perf_counter()
        HTTP_IN_FLIGHT.labels(service).inc()
        status = "5xx"
        try:
            response = await call_next(request)
            status = f"{response.status_code // 100}xx"
            return response
        finally:
            elapsed = time.perf_counter() - start
            HTTP_IN_FLIGHT.labels(service).dec()
            HTTP_REQUESTS.labels(service, route, request.method, status).inc()
            HTTP_LATENCY.labels(service, route).observe(elapsed)
            if route not in QUIET_ROUTES:
                # The route template, never the raw path (it may carry a token); no address.
                access_log.info(
                    "request",
                    extra={
                        "method": request.method,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 1),
                        "request_id": request.headers.get("x-request-id", "")[:64],
                    },
                )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        checks = ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)
