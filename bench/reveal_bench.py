"""Reveal-and-serve throughput and latency against serving the same bytes with no checks.

Candidate: what a recipient's client does to see a photo through a share link, against the real
links service (its own uvicorn process, as ``make run`` starts it) and a real SecantusDB:
``POST /s/{token}/reveal`` (spends one view, answers JSON with a single-use ``image_url``) and
``GET image_url`` (redeems the ticket and returns the bytes). One operation is that pair.

Baselines, in the same run, on the same bytes (the ~300 KB JPEG the links service serves):
- static: a FastAPI app with ``StaticFiles`` over a temporary directory holding that file;
- memory: the same app's route answering ``Response(data, media_type="image/jpeg")``.
Both run in their own process under ``uvicorn.run`` with the settings ``services.shared.service
.serve`` uses (one process, default loop and HTTP parser, no access log). One operation is one
GET. The issue's goal: reveal-and-serve >= 50% of the static file's throughput.

Setup: ``deploy.local.stack.Stack`` on free ports in a temporary directory (broker, database,
all services); a 1600x1200 photo (corpus ``Landscape_0.jpg`` cropped, JPEG q73) is uploaded
through ingest and scanned; then ingest, review and the scanner are stopped (they are not on the
reveal path and would otherwise take CPU from both sides). Every client thread reveals its own
link (``max_views`` 1000, the service's cap; a new link is made, untimed, when one is used up).

Where the time goes, also measured: "same calls, no HTTP" runs the links service's own
``domain.reveal`` + ``domain.redeem_ticket`` in this process over the same database (what is left
when the web layer costs nothing); CPU time per operation of each process (client, server,
database, from /proc); database commands per reveal + serve (the server's opcounters); and
single-client timings of those commands.

Measurement: ``BENCH_THREADS`` (8) client threads, one keep-alive ``httpx.Client`` each, for
``BENCH_SECONDS`` (5) per round and ``BENCH_ROUNDS`` (5) rounds, the targets in a rotating order
every round after a warm-up; ops/s, p50 and p99 are medians over rounds; then one round of each
with a single client. Exit code 0 whether or not the goal is met.

Run: ``python -m bench.reveal_bench`` (or ``make bench-reveal``).
"""

from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from deploy.local.stack import ROOT, Stack, StackPorts, http_ok, terminate
from services.shared.mongo import make_client

CORPUS = Path(
    os.environ.get("CHATPIC_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
GOAL = 0.5  # reveal-and-serve ops/s over static-file ops/s
MAX_VIEWS = 1000  # LinksSettings.max_max_views: the most one link allows

# One timed operation returns its phase durations in seconds (total first).
Op = Callable[[], tuple[float, ...]]


def photo_300k() -> bytes:
    """A 1600x1200 photo-like JPEG that ingest stores at about 300 KB."""
    with Image.open(CORPUS / "Landscape_0.jpg") as src:
        img = src.convert("RGB").crop((100, 0, 1700, 1200))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=73)
    return out.getvalue()


# ---- the baseline server (runs in its own process) -----------------------------------------


def serve_baseline(port: int, path: Path) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response
    from fastapi.staticfiles import StaticFiles

    data = path.read_bytes()
    app = FastAPI()

    @app.get("/memory/{name}")
    async def memory(name: str) -> Response:
        return Response(data, media_type="image/jpeg")

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ok": True}

    app.mount("/static", StaticFiles(directory=path.parent), name="static")
    # As services.shared.service.serve runs every service.
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Baseline:
    def __init__(self, data: bytes, tmp: Path) -> None:
        self.path = tmp / "static" / "photo.jpg"
        self.path.parent.mkdir()
        self.path.write_bytes(data)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.reveal_bench", "--serve", str(self.port), str(self.path)],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while not http_ok(f"{self.url}/readyz"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the baseline server did not start")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        terminate(self.proc)


# ---- operations ----------------------------------------------------------------------------


def get_op(client: httpx.Client, url: str, size: int) -> Op:
    def op() -> tuple[float, ...]:
        start = time.perf_counter()
        resp = client.get(url)
        total = time.perf_counter() - start
        if resp.status_code != 200 or len(resp.content) != size:
            raise RuntimeError(f"GET {url}: {resp.status_code}, {len(resp.content)} bytes")
        return (total,)

    return op


@dataclass
class Photo:
    image_id: str
    owner_token: str
    size: int = 0


def new_link(links: httpx.Client, photo: Photo) -> str:
    resp = links.post(
        "/api/v1/links",
        json={"image_id": photo.image_id, "owner_token": photo.owner_token, "max_views": MAX_VIEWS},
    )
    resp.raise_for_status()
    return str(resp.json()["token"])


def reveal_op(client: httpx.Client, photo: Photo) -> Op:
    """Reveal + GET image_url on this thread's own link; a used-up link is replaced untimed."""
    state = {"token": new_link(client, photo), "left": MAX_VIEWS}

    def op() -> tuple[float, ...]:
        if state["left"] == 0:
            state["token"], state["left"] = new_link(client, photo), MAX_VIEWS
        start = time.perf_counter()
        granted = client.post(f"/s/{state['token']}/reveal")
        revealed = time.perf_counter()
        if granted.status_code != 200:
            raise RuntimeError(f"reveal: {granted.status_code} {granted.text[:200]}")
        body = granted.json()
        state["left"] = int(body["views_left"])
        resp = client.get(body["image_url"])
        end = time.perf_counter()
        if resp.status_code != 200 or len(resp.content) != photo.size:
            raise RuntimeError(f"image: {resp.status_code} {resp.content[:200]!r}")
        return (end - start, revealed - start, end - revealed)

    return op


def domain_op(client: httpx.Client, photo: Photo, ports: Any, salt: bytes) -> Op:
    """The same reveal and redeem as the links service, called in this process: no HTTP, the
    service's own domain code and repositories over the same database (what is left when the
    web layer costs nothing)."""
    from services.links import domain
    from services.links.visitors import Viewer

    state = {"token": new_link(client, photo), "left": MAX_VIEWS}
    viewer = Viewer(key="bench")

    def op() -> tuple[float, ...]:
        if state["left"] == 0:
            state["token"], state["left"] = new_link(client, photo), MAX_VIEWS
        start = time.perf_counter()
        ticket = domain.reveal(
            images=ports.images,
            links=ports.links,
            viewers=ports.viewers,
            tickets=ports.tickets,
            passwords=ports.passwords,
            salt=salt,
            token=str(state["token"]),
            viewer=viewer,
            ticket_ttl_s=60,
        )
        revealed = time.perf_counter()
        state["left"] = ticket.views_left
        served = domain.redeem_ticket(
            images=ports.images,
            tickets=ports.tickets,
            blobs=ports.blobs,
            salt=salt,
            ticket=ticket.ticket,
        )
        end = time.perf_counter()
        if len(served.data) != photo.size:
            raise RuntimeError(f"domain: {len(served.data)} bytes")
        return (end - start, revealed - start, end - revealed)

    return op


# ---- load ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    name: str
    url: str
    make_op: Callable[[httpx.Client], Op]
    pids: dict[str, int]  # the processes doing the work, by role ("client" = this one)


@dataclass
class Round:
    ops_per_s: float
    samples: list[tuple[float, ...]] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per operation, by role

    def pct(self, q: float, phase: int = 0) -> float:
        return float(np.percentile([s[phase] for s in self.samples], q)) * 1000


def run_load(target: Target, threads: int, seconds: float) -> Round:
    """``threads`` clients issue operations back to back for ``seconds``."""
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]
    results: list[list[tuple[float, ...]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        with httpx.Client(base_url=target.url, timeout=60) as client:
            try:
                op = target.make_op(client)
            except BaseException as exc:
                errors.append(exc)
                raise
            finally:
                barrier.wait()  # a thread that failed to prepare still arrives: nobody hangs
            try:
                while time.perf_counter() < deadline[0]:
                    results[i].append(op())
            except BaseException as exc:
                errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    cpu_before = {role: cpu_seconds(pid) for role, pid in target.pids.items()}
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    cpu_after = {role: cpu_seconds(pid) for role, pid in target.pids.items()}
    if errors:
        raise RuntimeError(f"{target.name}: {errors[0]!r}") from errors[0]
    samples = [s for r in results for s in r]
    cpu_ms = {
        role: (cpu_after[role] - cpu_before[role]) * 1000 / max(1, len(samples))
        for role in target.pids
    }
    return Round(ops_per_s=len(samples) / elapsed, samples=samples, cpu_ms=cpu_ms)


# ---- where the time goes -------------------------------------------------------------------

COUNTED = ("query", "getmore", "insert", "update", "delete")


def opcounters(mongo: Any) -> dict[str, int]:
    counters = mongo.admin.command("serverStatus")["opcounters"]
    return {k: int(counters.get(k, 0)) for k in COUNTED}


def probe_database(mongo: Any, image_id: str, repeats: int = 200) -> dict[str, float]:
    """Median ms of the database calls a reveal-and-serve makes, one client, nothing else
    running. Writes go to a scratch collection, never to the service's documents."""
    import gridfs
    from bson import ObjectId

    db = mongo["chatpic"]
    scratch = db["bench_probe"]
    scratch.delete_many({})
    scratch.insert_one({"_id": "counter", "n": 0})
    blob_id = ObjectId(str(db["images"].find_one({"_id": image_id})["blob_id"]))
    fs = gridfs.GridFS(db, collection="blobs")
    ticket_id = db["tickets"].find_one({}, {"_id": 1})["_id"]
    calls: dict[str, Callable[[int], object]] = {
        "find_one by _id": lambda i: db["tickets"].find_one({"_id": ticket_id}),
        "update_one by _id": lambda i: scratch.update_one(
            {"_id": "counter", "n": {"$gte": 0}}, {"$inc": {"n": 1}}
        ),
        "insert_one": lambda i: scratch.insert_one({"_id": f"p{i}", "at": time.time()}),
        "GridFS get (300 KB)": lambda i: fs.get(blob_id).read(),
    }
    out = {}
    for name, call in calls.items():
        call(-1)
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times) * 1000
    db.drop_collection("bench_probe")
    return out


# ---- the run -------------------------------------------------------------------------------


def print_table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def setup_photo(stack: Stack) -> Photo:
    p = stack.ports
    with httpx.Client(base_url=f"http://127.0.0.1:{p.ingest}", timeout=60) as ingest:
        resp = ingest.post("/api/v1/images", files={"file": ("photo.jpg", photo_300k())})
        resp.raise_for_status()
        body = resp.json()
        photo = Photo(image_id=body["image_id"], owner_token=body["owner_token"])
        deadline = time.monotonic() + 120
        status = "pending"
        while status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = ingest.get(f"/api/v1/images/{photo.image_id}").json()["status"]
    if status != "cleared":
        raise RuntimeError(f"the benchmark photo was not cleared: {status}")
    with httpx.Client(base_url=f"http://127.0.0.1:{p.links}", timeout=60) as links:
        token = new_link(links, photo)
        granted = links.post(f"/s/{token}/reveal")
        granted.raise_for_status()
        photo.size = len(links.get(granted.json()["image_url"]).content)
    return photo


def build_targets(
    stack: Stack, baseline: Baseline, photo: Photo, data: bytes, ports: Any, salt: bytes
) -> list[Target]:
    me, base_pid = os.getpid(), baseline.proc.pid
    links_url = f"http://127.0.0.1:{stack.ports.links}"
    links_pid, db_pid = stack.procs["links"].pid, stack.procs["database"].pid
    return [
        Target(
            "static file (StaticFiles)",
            baseline.url,
            lambda c: get_op(c, "/static/photo.jpg", len(data)),
            {"client": me, "server": base_pid},
        ),
        Target(
            "bytes from memory (Response)",
            baseline.url,
            lambda c: get_op(c, "/memory/photo.jpg", len(data)),
            {"client": me, "server": base_pid},
        ),
        Target(
            "reveal + serve (links)",
            links_url,
            lambda c: reveal_op(c, photo),
            {"client": me, "server": links_pid, "database": db_pid},
        ),
        Target(
            "same calls, no HTTP",
            links_url,  # only to make the links
            lambda c: domain_op(c, photo, ports, salt),
            {"client": me, "database": db_pid},
        ),
    ]


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_baseline(int(sys.argv[2]), Path(sys.argv[3]))
        return 0
    from pymongo import MongoClient

    from services.links.ports import ports_opener
    from services.links.settings import LinksSettings

    threads = int(os.environ.get("BENCH_THREADS", "8"))
    seconds = float(os.environ.get("BENCH_SECONDS", "5"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    with tempfile.TemporaryDirectory(prefix="chatpic-reveal-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        stack = Stack(var_dir=tmp / "var", ports=StackPorts.free())
        print("Starting broker, database and services...", flush=True)
        stack.start()
        baseline: Baseline | None = None
        settings = LinksSettings(
            mongo_uri=f"mongodb://127.0.0.1:{stack.ports.mongo}/", secret_salt=stack.salt()
        )
        service_client = make_client(settings)  # as the links service opens it
        mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_uri, retryWrites=False)
        try:
            photo = setup_photo(stack)
            for key in [k for k in stack.procs if k not in ("broker", "database", "links")]:
                stack.stop_process(key)  # not on the reveal path
            with httpx.Client(base_url=f"http://127.0.0.1:{stack.ports.links}") as links:
                token = new_link(links, photo)
                data = links.get(links.post(f"/s/{token}/reveal").json()["image_url"]).content
            baseline = Baseline(data, tmp)
            ports = ports_opener(settings)(service_client[settings.mongo_db])
            targets = build_targets(stack, baseline, photo, data, ports, settings.salt())
            print(
                f"Served photo: {len(data)} bytes ({len(data) / 1024:.0f} KiB), 1600x1200 JPEG. "
                f"{threads} client threads, {rounds} rounds x {seconds:g} s, rotating order.",
                flush=True,
            )
            for target in targets:  # warm-up: connections, imports, caches of both servers
                run_load(target, threads, 1.0)
            results: dict[str, list[Round]] = {t.name: [] for t in targets}
            db_ops: list[float] = []
            for r in range(rounds):
                for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                    before = sum(opcounters(mongo).values())
                    result = run_load(target, threads, seconds)
                    if target is targets[2]:
                        spent = sum(opcounters(mongo).values()) - before
                        db_ops.append(spent / len(result.samples))
                    results[target.name].append(result)
                    print(
                        f"  round {r + 1} {target.name:<29} {result.ops_per_s:7.1f} ops/s  "
                        f"p50 {result.pct(50):6.1f} ms  p99 {result.pct(99):6.1f} ms",
                        flush=True,
                    )
            single = {t.name: run_load(t, 1, seconds) for t in targets}
            report(results, single, db_ops, probe_database(mongo, photo.image_id), threads)
        except Exception:
            for log in sorted((stack.var_dir / "logs").glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- last lines of {log.name}", *lines, sep="\n", file=sys.stderr)
            raise
        finally:
            if baseline is not None:
                baseline.stop()
            mongo.close()
            service_client.close()
            stack.stop()
    return 0


def report(
    results: dict[str, list[Round]],
    single: dict[str, Round],
    db_ops: list[float],
    probe: dict[str, float],
    threads: int,
) -> None:
    names = list(results)
    static, memory, candidate, in_process = names

    def med(name: str, fn: Callable[[Round], float]) -> float:
        return statistics.median(fn(r) for r in results[name])

    def cpu(name: str, role: str) -> str:
        if role not in results[name][0].cpu_ms:
            return "-"
        return f"{med(name, lambda r: r.cpu_ms[role]):.1f}"

    rate = {name: med(name, lambda r: r.ops_per_s) for name in names}
    rows = []
    for name in names:
        rows.append(
            [
                name,
                f"{rate[name]:.1f}",
                f"{med(name, lambda r: r.pct(50)):.1f}",
                f"{med(name, lambda r: r.pct(99)):.1f}",
                f"{rate[name] / rate[static]:.2f}",
                f"{rate[name] / rate[memory]:.2f}",
                f"{single[name].pct(50):.1f}",
                f"{single[name].pct(99):.1f}",
                cpu(name, "client"),
                cpu(name, "server"),
                cpu(name, "database"),
            ]
        )
    print()
    print(
        f"Medians over rounds; {threads} clients unless marked 1c (one client, one round); "
        "CPU = CPU ms per operation by process"
    )
    head = ["target", "ops/s", "p50 ms", "p99 ms", "/static", "/memory", "1c p50", "1c p99"]
    print_table([*head, "CPU client", "CPU server", "CPU db"], rows)
    pairs = [
        c.ops_per_s / s.ops_per_s for c, s in zip(results[candidate], results[static], strict=True)
    ]
    print(
        f"\nreveal+serve / static, per round: {', '.join(f'{x:.2f}' for x in pairs)} "
        f"(median {statistics.median(pairs):.2f})"
    )
    reveal_p50 = med(candidate, lambda r: r.pct(50, 1))
    image_p50 = med(candidate, lambda r: r.pct(50, 2))
    print(
        f"inside reveal+serve ({threads} clients): reveal p50 {reveal_p50:.1f} ms, "
        f"image GET p50 {image_p50:.1f} ms; one client: reveal "
        f"{single[candidate].pct(50, 1):.1f} ms, image GET {single[candidate].pct(50, 2):.1f} ms"
    )
    print(
        f"database commands per reveal+serve (server opcounters): {statistics.median(db_ops):.1f}"
    )
    print(
        "single-client database timings (median of 200): "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in probe.items())
    )
    print(
        f"same reveal + redeem in-process, no HTTP ({threads} threads): "
        f"{rate[in_process]:.1f} ops/s = {rate[in_process] / rate[static]:.2f} of static; "
        f"one thread {single[in_process].ops_per_s:.1f} ops/s"
    )
    ratio = rate[candidate] / rate[static]
    verdict = "MET" if ratio >= GOAL else "NOT MET"
    print(
        f"\nGoal (reveal+serve >= {GOAL:.0%} of static-file throughput): {verdict} "
        f"({ratio:.0%} of static, {rate[candidate] / rate[memory]:.0%} of in-memory bytes)"
    )


if __name__ == "__main__":
    sys.exit(main())
