"""Request ids and trace ids, carried in context variables so every log line written while
handling one HTTP request or one Kafka record names it (services.shared.logs adds them).

- ``request_id``: set by the HTTP middleware (services.shared.metrics) for one request. An
  inbound ``X-Request-ID`` is kept only if it is 1-64 characters of ``[A-Za-z0-9._-]``;
  anything else is replaced by a new id, so a client cannot inject text into logs.
- ``trace_id``: set while a Kafka record is handled, from its envelope (or its ``trace_id``
  header when the envelope cannot be read). An upload's trace id is its request id; ingest
  stores it with the image and every event about the image carries it on.

Context variables follow ``run_in_threadpool`` (anyio copies the context into the worker
thread), so synchronous endpoints and the work they hand to threads log the id too.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

HEADER = "x-request-id"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")

request_id: ContextVar[str] = ContextVar("chatpic_request_id", default="")
trace_id: ContextVar[str] = ContextVar("chatpic_trace_id", default="")


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(value: str | None) -> bool:
    return value is not None and _VALID.fullmatch(value) is not None


def accept_request_id(inbound: str | None) -> str:
    """The inbound id if it is well-formed, else a new one."""
    return inbound if inbound is not None and valid_id(inbound) else new_id()


def current_trace() -> str:
    """The id that events published now should carry: the Kafka record being handled, else
    the HTTP request being served, else '' (the caller makes a new one)."""
    return trace_id.get() or request_id.get()


@contextlib.contextmanager
def tracing(value: str) -> Iterator[None]:
    """Log lines (and events published) inside the block carry ``value`` as trace id. An
    empty or malformed value changes nothing."""
    if not valid_id(value):
        yield
        return
    token = trace_id.set(value)
    try:
        yield
    finally:
        trace_id.reset(token)


def record_trace(record: Any) -> str:
    """The ``trace_id`` header of a consumed Kafka record, or ''."""
    for key, value in getattr(record, "headers", None) or ():
        if key == "trace_id" and isinstance(value, bytes | bytearray):
            text = bytes(value).decode("ascii", "replace")
            return text if valid_id(text) else ""
    return ""
