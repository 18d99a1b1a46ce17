"""One error mapping for every app: domain errors and bad requests become JSON {code, message}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.shared.errors import DomainError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("malformed_request", "The request could not be read."),
    404: ("not_found", "Nothing is here."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: ("too_large", "The request body is too large."),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()][:10]
        return JSONResponse(
            {
                "code": "invalid_request",
                "message": "The request is missing fields or has values of the wrong kind.",
                "fields": fields,
            },
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
        return JSONResponse({"code": code, "message": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"route": request.url.path})
        return JSONResponse(
            {"code": "internal_error", "message": "Something went wrong on our side."},
            status_code=500,
        )
