"""Structured JSON logs. Callers never pass raw IPs, tokens or image bytes."""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from services.shared import tracing

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _no_connection_lines(record: logging.LogRecord) -> bool:
    """uvicorn logs each WebSocket handshake as 'ADDRESS - "WebSocket /raw/path" [accepted]':
    an address and possibly an id in one line. Our own access log covers these requests."""
    return not (record.name.startswith("uvicorn") and "WebSocket" in str(record.msg))


class ContextIds(logging.Filter):
    """Adds the request id and trace id of the work in hand (services.shared.tracing) to every
    record that does not name them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = tracing.request_id.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        trace_id = tracing.trace_id.get()
        if trace_id and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(_no_connection_lines)
    handler.addFilter(ContextIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings become JSON lines too
    for noisy in ("kafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Group membership changes (joins, lost membership, new assignments) are rare and are what
    # an SRE needs when consumption stalls; keep them.
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)
    # ``kill -USR1 <pid>`` writes every thread's stack to stderr: for a process that is alive
    # but stuck, without stopping it.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
