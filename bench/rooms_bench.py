"""Room message delivery latency under load, against a bare WebSocket broadcast hub.

Load (the issue's): ``BENCH_CLIENTS`` (200) WebSocket clients in ``BENCH_ROOMS`` (10) rooms,
each room carrying ``BENCH_RATE`` (5) messages per second, sent in turn by its members, for
``BENCH_SECONDS`` (20) per target after a warm-up. Every client is in this one process (asyncio,
the ``websockets`` client); a message carries its id, and its send time is kept here, so the
latency of one delivery is receive time minus send time on one clock. Every member of the room,
the sender included, receives each message: 20 deliveries per message.

Candidate: the rooms service of the stack ``make run`` starts (its own uvicorn process, real
SecantusDB and broker): each message is rate-limited, stored, relayed to the broker and fanned
out. Unlike ``make run``: the rate limit is raised to 1,000,000 points (every client here shares
127.0.0.1, hence one budget, which the default would exhaust at once; the limiter still runs on
every message, it only never refuses), ingest, review and the scanner are stopped once the stack
is up (not on the message path; they would only take CPU), and logging is at WARNING.
Baseline, same run: a FastAPI app whose WebSocket route keeps an in-memory set of sockets per
room and forwards each frame to all of them (no storage, no limits, no broker), in its own
process under ``uvicorn.run`` with the same settings. The ratio says what our safety and
durability cost at this load.

Reported: deliveries expected and received (lost or late past the run count as missing), p50,
p95, p99 and max latency, and CPU seconds of the server process per 1000 deliveries. Exit code
0 whether or not anything is met; the numbers go to the README by hand.

Run: ``python -m bench.rooms_bench`` (or ``make bench-rooms``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

from deploy.local.stack import ROOT, Stack, StackPorts, http_ok

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "200"))
ROOMS = int(os.environ.get("BENCH_ROOMS", "10"))
RATE = float(os.environ.get("BENCH_RATE", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
WARMUP_S = 3.0
DRAIN_S = 2.0


# ---- the baseline server (runs in its own process) -----------------------------------------


def serve_baseline(port: int) -> None:
    app = FastAPI()
    rooms: dict[str, set[WebSocket]] = {}

    @app.get("/readyz")
    def ready() -> dict[str, bool]:
        return {"ok": True}

    @app.websocket("/ws/{room}")
    async def ws(socket_: WebSocket, room: str) -> None:
        await socket_.accept()
        members = rooms.setdefault(room, set())
        await socket_.receive_text()  # join
        members.add(socket_)
        await socket_.send_text(json.dumps({"type": "welcome"}))
        try:
            while True:
                frame = json.loads(await socket_.receive_text())
                out = json.dumps({"type": "message", "text": frame.get("text", "")})
                for member in list(members):
                    try:
                        await member.send_text(out)
                    except Exception:
                        members.discard(member)
        except WebSocketDisconnect:
            members.discard(socket_)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---- the load ----------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    sent: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    measuring: bool = False
    expected: int = 0


async def reader(conn: ClientConnection, run: Run) -> None:
    async for raw in conn:
        frame = json.loads(raw)
        if frame.get("type") != "message":
            continue
        mid = str(frame.get("text", ""))[:12]
        sent = run.sent.get(mid)
        if sent is not None:
            run.latencies.append(time.perf_counter() - sent)


async def room_load(urls: list[str], run: Run, room_index: int) -> None:
    conns: list[ClientConnection] = []
    for i, url in enumerate(urls):
        conn = await connect(url, max_size=2**20, open_timeout=30)
        await conn.send(json.dumps({"type": "join", "nickname": f"bench{room_index}x{i}"}))
        while json.loads(await conn.recv()).get("type") != "welcome":
            pass
        conns.append(conn)
    readers = [asyncio.create_task(reader(c, run)) for c in conns]
    interval = 1.0 / RATE
    start = time.perf_counter()
    n = 0
    try:
        while time.perf_counter() - start < WARMUP_S + SECONDS:
            n += 1
            measuring = time.perf_counter() - start >= WARMUP_S
            mid = f"{room_index:02d}{n:010d}"
            sender = conns[n % len(conns)]
            if measuring:
                run.sent[mid] = time.perf_counter()
                run.expected += len(conns)
            await sender.send(json.dumps({"type": "message", "text": mid}))
            next_at = start + n * interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.sleep(DRAIN_S)
    finally:
        for task in readers:
            task.cancel()
        for conn in conns:
            await conn.close()


async def load(room_urls: list[list[str]], run: Run) -> None:
    await asyncio.gather(*(room_load(urls, run, i) for i, urls in enumerate(room_urls)))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize(run: Run, cpu_s: float) -> dict[str, Any]:
    lat = sorted(run.latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 100 else [float("nan")] * 99
    return {
        "name": run.name,
        "expected": run.expected,
        "received": len(lat),
        "p50_ms": q[49] * 1000,
        "p95_ms": q[94] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": (lat[-1] if lat else float("nan")) * 1000,
        "cpu_s_per_1000": cpu_s / max(1, len(lat)) * 1000,
    }


def per_room(clients: int, rooms: int) -> list[int]:
    return [clients // rooms + (1 if i < clients % rooms else 0) for i in range(rooms)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(name: str, room_urls: list[list[str]], pid: int) -> dict[str, Any]:
    run = Run(name)
    before = cpu_seconds(pid)
    asyncio.run(load(room_urls, run))
    return summarize(run, cpu_seconds(pid) - before)


def bench_baseline() -> dict[str, Any]:
    port = free_port()
    code = f"from bench.rooms_bench import serve_baseline; serve_baseline({port})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"http://127.0.0.1:{port}/readyz") and time.monotonic() < deadline:
            time.sleep(0.2)
        urls = [
            [f"ws://127.0.0.1:{port}/ws/room{r}"] * n
            for r, n in enumerate(per_room(CLIENTS, ROOMS))
        ]
        return measure("bare broadcast hub", urls, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def bench_rooms() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            var_dir=Path(tmp),
            ports=StackPorts.free(),
            extra_env={"CHATPIC_ROOMS_RATE_LIMIT": "1000000", "CHATPIC_LOG_LEVEL": "WARNING"},
        )
        stack.start()
        try:
            for key in ("ingest", "review", "scanner"):  # not on the message path
                stack.stop_process(key)
            base = f"http://127.0.0.1:{stack.ports.rooms}"
            urls = []
            for r, n in enumerate(per_room(CLIENTS, ROOMS)):
                made = httpx.post(
                    f"{base}/api/v1/rooms",
                    json={"name": f"bench {r}", "public": False, "lifetime_s": 3600},
                    timeout=30,
                )
                made.raise_for_status()
                slug = made.json()["slug"]
                urls.append([f"ws://127.0.0.1:{stack.ports.rooms}/api/v1/rooms/{slug}/ws"] * n)
            return measure("rooms service", urls, stack.procs["rooms"].pid)
        finally:
            stack.stop()


def main() -> None:
    print(
        f"{CLIENTS} clients in {ROOMS} rooms, {RATE:g} messages/s per room, "
        f"{SECONDS:g} s measured per target"
    )
    results = [bench_baseline(), bench_rooms()]
    header = f"{'target':<22}{'expected':>10}{'received':>10}{'p50 ms':>9}{'p95 ms':>9}"
    print(header + f"{'p99 ms':>9}{'max ms':>9}{'cpu s/1k':>10}")
    for r in results:
        print(
            f"{r['name']:<22}{r['expected']:>10}{r['received']:>10}{r['p50_ms']:>9.1f}"
            f"{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}{r['cpu_s_per_1000']:>10.3f}"
        )
    base, ours = results
    print(f"p95 ratio (rooms / bare hub): {ours['p95_ms'] / base['p95_ms']:.2f}")
    print(f"delivered: {ours['received']}/{ours['expected']}", end=" ")
    print(f"(bare hub {base['received']}/{base['expected']})")


if __name__ == "__main__":
    main()
