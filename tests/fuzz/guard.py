"""Run the intake on hostile inputs in worker processes, each input under a time and memory bound.

Each worker is a ``spawn``-ed process (no state inherited from the test runner) that imports the
intake once, warms it up, records its baseline RSS and then judges inputs one at a time, in
process, so a case costs what sanitize() costs. The parent never runs an input itself: it hands
one case at a time to each worker and watches it:

- time: a case not answered within ``Bounds.seconds`` is a *hang*; the worker is killed (a C
  decoder in a loop cannot be interrupted any other way) and replaced;
- memory: the worker measures each case's peak RSS (VmHWM, reset before the case) over its RSS
  before the case, and the parent reads the worker's RSS from /proc every 20 ms; growth beyond
  ``Bounds.rss_growth`` is a *memory* finding (the worker is killed when the parent sees it live);
- a worker that dies (segfault, abort, OOM killer) while on a case is a *died* finding.

Inputs that fail are written to ``save_dir`` (when given) as ``<kind>-<sha256 prefix>.bin``.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from services.ingest.intake import IntakeLimits
from tests.fuzz.oracle import LIMITS, Verdict

MiB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")
_POLL_S = 0.02
_REPLACED = frozenset({"hang", "memory", "died"})  # the worker was killed or died: saved then


@dataclass(frozen=True)
class Bounds:
    """Per input. Measured on this 2-core machine (idle), the costliest inputs the limits allow:
    a 500 MP GIF animation (120 frames of 2040 px) 11-17 s and +114 MiB; a 50 MP 16-bit grey
    PNG 1.2 s and +571 MiB; a 50 MP RGBA PNG 1.3 s and +402 MiB. So: 1.5 GiB of growth (~2.7x
    the worst legitimate input; the machine has 23 GB but the ingest runs uploads in parallel
    threads) and 60 s (~4x the slowest, for a loaded machine; the bombs fixed so far took
    minutes to hours). The suite's own inputs are small (slowest ~2.5 s): it uses 20 s."""

    seconds: float = 60.0
    rss_growth: int = 1536 * MiB


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes = field(repr=False)
    family: str = ""  # truncate, flip, dims, icc, exif, polyglot, foreign, bomb, fuzz...
    expect: str = "any"  # "any", "accept", "refuse" or the exact refusal code


@dataclass(frozen=True)
class Result:
    name: str
    family: str
    expect: str
    size: int
    kind: str  # accepted | refused | crash (from the verdict) | hang | memory | died
    verdict: Verdict | None
    seconds: float
    rss_growth: int  # the case's peak RSS over the worker's RSS before it
    detail: str = ""

    @property
    def failed(self) -> bool:
        if self.verdict is None or not self.verdict.ok:
            return True
        return not expectation_met(self.expect, self.verdict)

    def describe(self) -> str:
        what = self.verdict.describe() if self.verdict else self.detail
        growth = self.rss_growth // MiB
        head = f"{self.name} [{self.family}, {self.size} B, expect {self.expect}]"
        return f"{head}: {what} in {self.seconds:.2f} s, +{growth} MiB"


def expectation_met(expect: str, verdict: Verdict) -> bool:
    if expect == "any":
        return True
    if expect == "accept":
        return verdict.kind == "accepted"
    if expect == "refuse":
        return verdict.kind == "refused"
    return verdict.kind == "refused" and verdict.code == expect


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    return 0


def start_measuring() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS, which is returned.

    Not ``ru_maxrss``: on Linux it survives exec, so a spawned worker would start with its
    parent's high-water mark. Writing 5 to /proc/self/clear_refs resets VmHWM (Linux >= 4.0);
    where that is refused the peak is the worker's since it started (still per process).
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass
    return _status_bytes("VmRSS")


def peak_since(start_rss: int) -> int:
    """How far the peak RSS rose above ``start_rss`` since ``start_measuring``."""
    return max(0, _status_bytes("VmHWM") - start_rss)


def resting_rss() -> int:
    return _status_bytes("VmRSS")


def current_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _warm_up(limits: IntakeLimits) -> None:
    """Import every codec and build the cached sRGB profile before any case is measured."""
    from services.ingest.intake import accepted_formats
    from tests.fuzz.oracle import judge
    from tests.unit.corpus import corpus_bytes

    accepted_formats()
    for name in ("Canon_40D.jpg", "transparent.png", "dispose_bgnd.gif", "hopper.webp"):
        judge(corpus_bytes(name), limits)


def serve(conn: Connection, limits: IntakeLimits) -> None:
    """Worker loop: (index, bytes) in, (index, verdict, RSS growth) out; None ends it. The
    growth is the case's peak RSS over the RSS before it (checking the output - at most 2048 px
    a side - included)."""
    from tests.fuzz.oracle import judge

    # Decoder warnings (corrupt EXIF, tag data past the end...) are expected here by the
    # thousand; the service only logs them too.
    warnings.simplefilter("ignore")
    _warm_up(limits)
    conn.send(("ready", resting_rss()))
    while True:
        message = conn.recv()
        if message is None:
            return
        index, data = message
        before = start_measuring()
        verdict = judge(data, limits)
        conn.send(("done", index, verdict, peak_since(before)))


class Worker:
    """One spawned worker process with a pipe; ``target`` runs in it."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()
        self.baseline = 0
        self.busy: tuple[Case, float] | None = None

    def wait_ready(self, timeout: float = 120.0) -> None:
        try:
            if not self.conn.poll(timeout):
                raise EOFError
            tag, baseline = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.kill()
            raise RuntimeError(f"fuzz worker did not start (exit {self.proc.exitcode})") from exc
        assert tag == "ready"
        self.baseline = int(baseline)

    @property
    def pid(self) -> int:
        return int(self.proc.pid or 0)

    def live_growth(self) -> int:
        return max(0, current_rss(self.pid) - self.baseline)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.proc.join(10)
        self.kill()


class GuardedPool:
    """``workers`` judging processes; ``run`` feeds them cases and yields a Result per case."""

    def __init__(
        self,
        workers: int = 2,
        bounds: Bounds | None = None,
        limits: IntakeLimits = LIMITS,
        save_dir: Path | None = None,
    ) -> None:
        self.bounds = bounds or Bounds()
        self.limits = limits
        self.save_dir = save_dir
        self.workers = [self._start() for _ in range(workers)]
        for worker in self.workers:
            worker.wait_ready()

    def _start(self) -> Worker:
        return Worker(serve, self.limits)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> GuardedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, cases: Iterable[Case]) -> Iterator[Result]:
        pending = iter(cases)
        exhausted = False
        while True:
            for worker in self.workers:
                if worker.busy is None and not exhausted:
                    case = next(pending, None)
                    if case is None:
                        exhausted = True
                    else:
                        worker.busy = (case, time.monotonic())
                        worker.conn.send((0, case.data))
            busy = [w for w in self.workers if w.busy is not None]
            if not busy:
                return
            ready = wait([w.conn for w in busy], timeout=_POLL_S)
            for worker in busy:
                assert worker.busy is not None
                case = worker.busy[0]
                result = self._answer(worker) if worker.conn in ready else self._watch(worker)
                if result is None:
                    continue
                worker.busy = None
                if result.failed and result.kind not in _REPLACED:
                    self._save(result, case.data)
                yield result

    def _answer(self, worker: Worker) -> Result | None:
        assert worker.busy is not None
        case = worker.busy[0]
        try:
            _, _, verdict, growth = worker.conn.recv()
        except (EOFError, OSError):
            return self._replace(worker, "died", f"worker exit code {worker.proc.exitcode}")
        kind = verdict.kind
        detail = ""
        if growth > self.bounds.rss_growth:
            kind, detail = "memory", f"peak RSS grew by {growth // MiB} MiB"
        return Result(
            case.name,
            case.family,
            case.expect,
            len(case.data),
            kind,
            verdict if kind != "memory" else None,
            verdict.seconds,
            growth,
            detail,
        )

    def _watch(self, worker: Worker) -> Result | None:
        assert worker.busy is not None
        started = worker.busy[1]
        if not worker.proc.is_alive():
            return self._replace(worker, "died", f"worker exit code {worker.proc.exitcode}")
        if time.monotonic() - started > self.bounds.seconds:
            return self._replace(worker, "hang", f"no answer within {self.bounds.seconds:.0f} s")
        growth = worker.live_growth()
        if growth > self.bounds.rss_growth:
            return self._replace(worker, "memory", f"RSS grew by {growth // MiB} MiB (killed)")
        return None

    def _replace(self, worker: Worker, kind: str, detail: str) -> Result:
        assert worker.busy is not None
        case, started = worker.busy
        growth = worker.live_growth()
        worker.kill()
        index = self.workers.index(worker)
        fresh = self._start()
        fresh.wait_ready()
        self.workers[index] = fresh
        result = Result(
            case.name,
            case.family,
            case.expect,
            len(case.data),
            kind,
            None,
            time.monotonic() - started,
            growth,
            detail,
        )
        self._save(result, case.data)
        return result

    def _save(self, result: Result, data: bytes) -> None:
        if self.save_dir is not None:
            save_input(self.save_dir, result.kind, data, result.describe())


def save_input(save_dir: Path, kind: str, data: bytes, description: str) -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = save_dir / f"{kind}-{digest}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(description + "\n")
    return path
