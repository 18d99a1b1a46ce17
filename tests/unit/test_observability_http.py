"""The shared HTTP middleware: request ids (accepted, replaced, echoed, on every log line of the
request), RED metrics by route template, 5xx counted, streaming and WebSockets unaffected."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from starlette.websockets import WebSocketDisconnect

from services.shared import tracing
from services.shared.http import install_error_handlers
from services.shared.logs import ContextIds
from services.shared.metrics import instrument

endpoint_log = logging.getLogger("tests.observability.endpoint")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextIds())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[Collect]:
    handler = Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def make_app(service: str) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        endpoint_log.info("sync endpoint", extra={"item": item_id})
        return {"item": item_id, "seen_request_id": tracing.request_id.get()}

    @app.get("/async")
    async def in_thread() -> dict[str, str]:
        def work() -> str:
            endpoint_log.info("in a worker thread")
            return tracing.request_id.get()

        return {"thread_request_id": await run_in_threadpool(work)}

    @app.get("/boom")
    def boom() -> None:
        endpoint_log.info("about to fail")
        raise RuntimeError("kaput")

    @app.get("/stream")
    def stream() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            for i in range(50):
                yield f"chunk-{i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.websocket("/ws/{room}")
    async def socket(ws: WebSocket, room: str) -> None:
        if room == "closed":
            await ws.close(code=1008)
            return
        await ws.accept()
        endpoint_log.info("socket joined")
        async for text in ws.iter_text():
            await ws.send_text(f"{room}:{text}:{tracing.request_id.get()}")

    instrument(app, service, lambda: {"database": True, "broker": False})
    return app


def count(service: str, route: str, method: str, status: str) -> float:
    labels = {"service": service, "route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("chatpic_http_requests_total", labels) or 0.0


def service_name() -> str:
    return f"obs-{uuid.uuid4().hex[:8]}"


def test_a_well_formed_inbound_request_id_is_kept_echoed_and_on_every_log_line(
    logs: Collect,
) -> None:
    service = service_name()
    with TestClient(make_app(service)) as client:
        resp = client.get("/items/42", headers={"X-Request-ID": "obs-Abc_1.2-3"})
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "obs-Abc_1.2-3"
    assert resp.json()["seen_request_id"] == "obs-Abc_1.2-3"
    inside = [r for r in logs.records if r.getMessage() == "sync endpoint"]
    access = [r for r in logs.records if r.name == "chatpic.access"]
    assert len(inside) == 1 and getattr(inside[0], "request_id", None) == "obs-Abc_1.2-3"
    assert len(access) == 1
    line = access[0]
    assert getattr(line, "request_id", None) == "obs-Abc_1.2-3"
    assert getattr(line, "route", None) == "/items/{item_id}"  # the template, not /items/42
    assert getattr(line, "status", None) == "2xx" and getattr(line, "status_code", 0) == 200
    assert tracing.request_id.get() == ""  # nothing left behind in the test's context


@pytest.mark.parametrize(
    "inbound",
    ["x" * 65, "has space", "semi;colon", 'quote"d', "", "ünï"],
)
def test_a_malformed_inbound_request_id_is_replaced(inbound: str, logs: Collect) -> None:
    with TestClient(make_app(service_name())) as client:
        resp = client.get("/items/1", headers={"X-Request-ID": inbound.encode("utf-8")})
    made = resp.headers["x-request-id"]
    assert made != inbound and re.fullmatch(r"[0-9a-f]{32}", made)
    assert resp.json()["seen_request_id"] == made
    access = [r for r in logs.records if r.name == "chatpic.access"]
    assert [getattr(r, "request_id", None) for r in access] == [made]


def test_each_request_gets_its_own_id_and_threads_see_it(logs: Collect) -> None:
    with TestClient(make_app(service_name())) as client:
        first = client.get("/async")
        second = client.get("/async")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1]
    assert [first.json()["thread_request_id"], second.json()["thread_request_id"]] == ids
    threaded = [getattr(r, "request_id", None) for r in logs.records if "worker thread" in r.msg]
    assert threaded == ids


def test_route_templates_status_classes_and_unmatched_paths_are_counted() -> None:
    service = service_name()
    with TestClient(make_app(service)) as client:
        for i in range(3):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/no/such/page").status_code == 404
    assert count(service, "/items/{item_id}", "GET", "2xx") == 3
    assert count(service, "unmatched", "GET", "4xx") == 1
    observed = REGISTRY.get_sample_value(
        "chatpic_http_request_duration_seconds_count",
        {"service": service, "route": "/items/{item_id}"},
    )
    assert observed == 3
    in_flight = REGISTRY.get_sample_value("chatpic_http_in_flight_requests", {"service": service})
    assert in_flight == 0


def test_an_unhandled_error_is_counted_as_5xx_and_its_log_names_the_request(
    logs: Collect,
) -> None:
    service = service_name()
    with TestClient(make_app(service), raise_server_exceptions=False) as client:
        resp = client.get("/boom", headers={"X-Request-ID": "obs-boom-1"})
    assert resp.status_code == 500
    assert count(service, "/boom", "GET", "5xx") == 1
    before = [r for r in logs.records if r.getMessage() == "about to fail"]
    assert getattr(before[0], "request_id", None) == "obs-boom-1"
    error = [r for r in logs.records if r.getMessage() == "unhandled error"]
    assert getattr(error[0], "request_id", None) == "obs-boom-1"  # logged outside the middleware
    access = [r for r in logs.records if r.name == "chatpic.access"]
    assert getattr(access[0], "status", None) == "5xx"


def test_streamed_bodies_pass_through_whole() -> None:
    service = service_name()
    with TestClient(make_app(service)) as client:
        resp = client.get("/stream")
    assert resp.text == "".join(f"chunk-{i};" for i in range(50))
    assert resp.headers["x-request-id"]
    assert count(service, "/stream", "GET", "2xx") == 1


def test_websockets_work_and_are_counted_once_per_handshake(logs: Collect) -> None:
    service = service_name()
    with (
        TestClient(make_app(service)) as client,
        client.websocket_connect("/ws/lobby", headers={"X-Request-ID": "obs-ws-1"}) as ws,
    ):
        ws.send_text("hi")
        assert ws.receive_text() == "lobby:hi:obs-ws-1"
        ws.send_text("again")
        assert ws.receive_text() == "lobby:again:obs-ws-1"
        assert (b"x-request-id", b"obs-ws-1") in (ws.extra_headers or [])
    assert count(service, "/ws/{room}", "WEBSOCKET", "1xx") == 1
    joined = [r for r in logs.records if r.getMessage() == "socket joined"]
    assert getattr(joined[0], "request_id", None) == "obs-ws-1"
    # Connections are not requests: no latency sample, nothing left in flight.
    latency = REGISTRY.get_sample_value(
        "chatpic_http_request_duration_seconds_count", {"service": service, "route": "/ws/{room}"}
    )
    assert latency is None


def test_a_refused_websocket_is_counted_as_4xx() -> None:
    service = service_name()
    with (
        TestClient(make_app(service)) as client,
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/ws/closed") as ws,
    ):
        ws.receive_text()
    assert count(service, "/ws/{room}", "WEBSOCKET", "4xx") == 1


def test_readyz_reports_checks_and_degraded_and_build_info_is_set() -> None:
    service = service_name()
    with TestClient(make_app(service)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "checks": {"database": True, "broker": False},
        "degraded": ["broker"],
    }
    samples = [
        s
        for metric in REGISTRY.collect()
        if metric.name == "chatpic_build_info"
        for s in metric.samples
        if s.labels["service"] == service
    ]
    assert len(samples) == 1 and samples[0].value == 1 and samples[0].labels["version"]
