"""A small HTTP server beside the consumer: /metrics, /healthz, /readyz.

The scanner is ready only when every check passes (database, broker, model, consumer): it
can do nothing useful without any of them, so nothing is merely "degraded" here.

Only GET and HEAD are served; the other standard methods get 405 with ``Allow``, unknown paths
404, and every refusal is JSON ``{code, message}`` (never http.server's HTML error page)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.shared.readiness import readiness

ALLOW = "GET, HEAD"
REFUSED_METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
}


def serve(host: str, port: int, ready: Callable[[], dict[str, bool]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _refuse(self) -> None:
            self._json(
                405,
                {
                    "code": "method_not_allowed",
                    "message": f"{self.command} is not allowed here; use GET or HEAD.",
                },
                extra={"Allow": ALLOW},
            )

        def _answer(self, *, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST, body=body)
            elif path == "/healthz":
                self._json(200, {"status": "alive"}, body=body)
            elif path == "/readyz":
                checks = ready()
                answer = readiness(checks, required=list(checks))
                self._json(200 if answer["ready"] else 503, answer, body=body)
            else:
                self._json(404, {"code": "not_found", "message": "Nothing is here."}, body=body)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """http.server's own refusals (a malformed request line, an unknown method) as JSON."""
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            self.close_connection = True
            payload: dict[str, object] = {
                "code": _ERROR_CODES.get(code, "error"),
                "message": message or phrase,
            }
            self._json(code, payload, body=self.command != "HEAD" and code >= 200)

        def _json(
            self,
            status: int,
            payload: dict[str, object],
            *,
            body: bool = True,
            extra: dict[str, str] | None = None,
        ) -> None:
            data = json.dumps(payload).encode()
            self._send(status, data, "application/json", body=body, extra=extra)

        def _send(
            self,
            status: int,
            data: bytes,
            content_type: str,
            *,
            body: bool = True,
            extra: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return None

    for method in REFUSED_METHODS:
        setattr(Handler, f"do_{method}", Handler._refuse)
    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
