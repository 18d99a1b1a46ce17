"""Domain errors. They carry data; each app maps them to responses in one handler."""

from __future__ import annotations

import math
from typing import Any


class DomainError(Exception):
    """A refusal the client can act on: a stable machine code, an HTTP status and a sentence."""

    status: int = 400
    code: str = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        **data: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.data: dict[str, Any] = data

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.data)
        return body


class IntakeError(DomainError):
    """An upload we refuse (type, size, dimensions, corrupt bytes)."""

    status = 422
    code = "corrupt_image"


def try_again_in(seconds: float) -> str:
    """The sentence a refused person reads about the wait: "Try again in 10 minutes."."""
    s = max(1, math.ceil(seconds))
    if s < 60:
        return f"Try again in {s} second{'' if s == 1 else 's'}."
    m = math.ceil(s / 60)
    return f"Try again in {m} minute{'' if m == 1 else 's'}."


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after=retry_after_s)
        self.headers = {"Retry-After": str(retry_after_s)}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Gone(DomainError):
    """A link that existed but no longer serves (expired, used up)."""

    status = 410
    code = "gone"


class Unavailable(DomainError):
    """A dependency (broker, database) cannot be reached right now."""

    status = 503
    code = "unavailable"
