"""The scanner's metrics and health server (ports 8004/8005) over a real socket: GET and HEAD
are served; POST, PUT, DELETE, PATCH and OPTIONS get 405 with ``Allow: GET, HEAD`` and a JSON
``{code, message}`` (once http.server's 501 HTML page); unknown paths and unknown methods are
JSON too."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from services.scanner.health import serve

CHECKS = {"database": True, "broker": True, "model": True, "consumer": True}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = serve("127.0.0.1", 0, lambda: dict(CHECKS))
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def fetch(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    data = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, headers, data


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/nowhere"])
def test_other_methods_get_405_json_with_allow(port: int, method: str, path: str) -> None:
    status, headers, data = fetch(port, method, path, body=b"{}")
    assert status == 405, data[:200]
    assert headers["allow"] == "GET, HEAD"
    assert headers["content-type"] == "application/json"
    body = json.loads(data)
    assert body["code"] == "method_not_allowed" and method in body["message"]
    assert int(headers["content-length"]) == len(data)


def test_get_and_head_are_served(port: int) -> None:
    status, headers, data = fetch(port, "GET", "/healthz")
    assert (status, json.loads(data)) == (200, {"status": "alive"})
    status, headers, data = fetch(port, "GET", "/metrics")
    assert status == 200 and b"# TYPE " in data
    assert headers["content-type"].startswith("text/plain")
    for path, expected in (("/healthz", 200), ("/readyz", 200), ("/metrics", 200), ("/x", 404)):
        status, headers, data = fetch(port, "HEAD", path)
        assert status == expected and data == b"", path
        assert int(headers["content-length"]) > 0


def test_unknown_paths_and_methods_and_garbage_are_json(port: int) -> None:
    status, headers, data = fetch(port, "GET", "/admin?x=1")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(data) == {"code": "not_found", "message": "Nothing is here."}
    status, headers, data = fetch(port, "BREW", "/healthz")
    assert status == 501 and headers["content-type"] == "application/json"
    assert json.loads(data)["code"] == "not_implemented"
    # A request line http.server cannot read (it answers in HTTP/0.9 style: no status line).
    answer = raw_exchange(port, b"NOT A REQUEST LINE AT ALL\r\n\r\n")
    assert json.loads(answer)["code"] == "bad_request"
    # Too many header lines: a 431 with its status line, still JSON.
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
    answer = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 431") and b"application/json" in head.lower()
    assert json.loads(rest)["code"] == "headers_too_large"
    assert b"<html" not in answer.lower()


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(data)
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    return answer
