"""A small HTTP server beside the consumer: /metrics, /healthz, /readyz.

The scanner is ready only when every check passes (database, broker, model, consumer): it
can do nothing useful without any of them, so nothing is merely "degraded" here."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.shared.readiness import readiness


def serve(host: str, port: int, ready: Callable[[], dict[str, bool]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._json(200, {"status": "alive"})
            elif path == "/readyz":
                checks = ready()
                body = readiness(checks, required=list(checks))
                self._json(200 if body["ready"] else 503, body)
            else:
                self._json(404, {"code": "not_found", "message": "Nothing is here."})

        def _json(self, status: int, body: dict[str, object]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
