"""One error mapping for every app: JSON {code, message} for API clients, the same code and
sentence on a page for browsers. Outages of the database are 503s, never 500s."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pymongo.errors import ConnectionFailure, ExecutionTimeout, ServerSelectionTimeoutError
from starlette.exceptions import HTTPException

from services.shared.clients import Network, client_address, client_key
from services.shared.errors import DomainError, Unavailable
from services.shared.metrics import route_template
from services.shared.pages import Pages

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("malformed_request", "The request could not be read."),
    404: ("not_found", "Nothing is here."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: ("too_large", "The request body is too large."),
}
_OUTAGES = (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout)


def wants_html(request: Request) -> bool:
    """Browsers (forms, links) get pages; API clients (paths under /api/) get JSON."""
    if request.url.path.startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "")


def install_error_handlers(app: FastAPI) -> None:
    pages = Pages("services.shared")

    def answer(request: Request, exc: DomainError) -> Response:
        if wants_html(request):
            return pages.render(
                "error.html",
                exc.status,
                exc.headers,
                title="Something is not right",
                message=exc.message,
                code=exc.code,
            )
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()][:10]
        error = DomainError(
            "The request is missing fields or has values of the wrong kind.",
            code="invalid_request",
            status=422,
            fields=fields,
        )
        return answer(request, error)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
        return answer(request, DomainError(message, code=code, status=exc.status_code))

    async def _outage(request: Request, exc: Exception) -> Response:
        route = route_template(request)  # never the raw path: it may carry a token
        log.warning("database unavailable", extra={"route": route, "err": type(exc).__name__})
        outage = Unavailable(
            "The service is briefly unavailable. Please try again in a moment.",
            code="unavailable",
        )
        outage.headers = {"Retry-After": "5"}
        return answer(request, outage)

    for outage_type in _OUTAGES:
        app.add_exception_handler(outage_type, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        route = route_template(request)  # never the raw path: it may carry a token
        log.error("unhandled error", extra={"route": route}, exc_info=exc)
        error = DomainError("Something went wrong on our side.", code="internal_error", status=500)
        return answer(request, error)


def request_client_key(
    request: Request, salt: bytes, proxies: Sequence[Network], scope: str
) -> str:
    """The salted, reduced key of whoever sent ``request`` (X-Forwarded-For only via proxies)."""
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.get("x-forwarded-for"), proxies)
    return client_key(salt, address, scope)
