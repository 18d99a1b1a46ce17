"""The fuzzing property, run by hypothesis inside a guarded worker process.

Property (``check``): for any input, ``judge`` says "accepted" with a clean output or "refused"
with a 4xx IntakeError (see ``oracle``), never a crash or a problem. The child process runs
hypothesis on it and tells the parent about every example before and after running it, so the
parent (``FuzzRun``) can enforce the per-input time and memory bounds (hypothesis's own
``deadline`` can only report a slow example after it has returned; a hung decoder never does)
and keep the input that hung. A failing example is shrunk by hypothesis, then sent back with its
traceback; both are saved when a ``save_dir`` is given.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.fuzz.guard import (
    Bounds,
    MiB,
    Worker,
    peak_since,
    resting_rss,
    save_input,
    start_measuring,
)


@dataclass(frozen=True)
class FuzzConfig:
    examples: int = 200
    seed: int | None = None  # None with derandomize: the same examples on every run
    derandomize: bool = True
    max_seed_bytes: int = 64 * 1024  # corpus files used as seeds (bigger ones cost more per run)
    deadline_s: float | None = 10.0


@dataclass
class FuzzReport:
    examples: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "accepted jpeg", "refused ..."
    failure: str = ""  # "" when the property held for every example
    failure_kind: str = ""  # property | hang | memory | died
    saved: Path | None = None
    slowest_s: float = 0.0
    slowest_size: int = 0
    peak_growth: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> str:
        top = ", ".join(f"{k}: {n}" for k, n in self.outcomes.most_common(8))
        return (
            f"{self.examples} examples in {self.elapsed_s:.1f} s "
            f"({self.examples / max(self.elapsed_s, 1e-9):.1f}/s); slowest "
            f"{self.slowest_s:.2f} s ({self.slowest_size} B); peak RSS growth "
            f"{self.peak_growth // MiB} MiB; {top}"
        )


def fuzz_child(conn: Connection, config: FuzzConfig) -> None:
    """Worker side: run the property under hypothesis, streaming every example to the parent."""
    from tests.fuzz.guard import _warm_up
    from tests.fuzz.mutators import hostile_inputs, seed_files
    from tests.fuzz.oracle import LIMITS, judge

    warnings.simplefilter("ignore")
    seeds = seed_files(config.max_seed_bytes)
    _warm_up(LIMITS)
    conn.send(("ready", resting_rss()))
    failed: list[bytes] = []

    def check(data: bytes) -> None:
        conn.send(("start", data))
        before = start_measuring()
        verdict = judge(data, LIMITS)
        label = f"{verdict.kind} {verdict.code or verdict.fmt}".strip()
        conn.send(("end", label, verdict.seconds, peak_since(before)))
        if not verdict.ok:
            failed[:] = [data]  # the last one is the shrunk example hypothesis reports
        assert verdict.ok, verdict.describe()

    deadline = None if config.deadline_s is None else timedelta(seconds=config.deadline_s)
    test = settings(
        max_examples=config.examples,
        deadline=deadline,
        derandomize=config.derandomize,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(given(hostile_inputs(seeds))(check))
    if config.seed is not None:
        test = seed(config.seed)(test)
    try:
        test()
    except Exception as exc:
        text = "".join(traceback.format_exception(exc))[-4000:]
        conn.send(("finished", text, failed[-1] if failed else b""))
        return
    conn.send(("finished", "", b""))


class FuzzRun:
    """Parent side of one hypothesis run in a worker; ``step`` advances it, ``report`` ends it."""

    def __init__(self, config: FuzzConfig, bounds: Bounds, save_dir: Path | None = None) -> None:
        self.config, self.bounds, self.save_dir = config, bounds, save_dir
        self.report = FuzzReport()
        self.worker = Worker(fuzz_child, config)
        self.worker.wait_ready()
        self.started = time.monotonic()
        self.current: tuple[bytes, float] | None = None
        self.done = False

    @property
    def conn(self) -> Connection:
        return self.worker.conn

    def step(self, ready: bool) -> None:
        """Handle one message if ``ready``, and check the bounds of the running example."""
        if self.done:
            return
        if ready:
            try:
                self._message(self.conn.recv())
            except (EOFError, OSError):
                self._stop("died", f"worker exit code {self.worker.proc.exitcode}")
            return
        if self.current is None:
            if not self.worker.proc.is_alive():
                self._stop("died", f"worker exit code {self.worker.proc.exitcode}")
            return
        data, since = self.current
        if time.monotonic() - since > self.bounds.seconds:
            self._stop("hang", f"no answer within {self.bounds.seconds:.0f} s", data)
        elif self.worker.live_growth() > self.bounds.rss_growth:
            growth = self.worker.live_growth() // MiB
            self._stop("memory", f"RSS grew by {growth} MiB (killed)", data)

    def cut_short(self) -> None:
        """End the run now (out of time); the examples that ran still count."""
        if not self.done:
            self._stop("", "")

    def _message(self, message: tuple[object, ...]) -> None:
        tag = message[0]
        if tag == "start":
            data = message[1]
            assert isinstance(data, bytes)
            self.current = (data, time.monotonic())
        elif tag == "end":
            _, label, seconds, growth = message
            assert isinstance(label, str) and isinstance(seconds, float)
            assert isinstance(growth, int)
            self._count(label, seconds, growth)
        elif tag == "finished":
            _, text, data = message
            assert isinstance(text, str) and isinstance(data, bytes)
            if text:
                self._stop("property", text, data)
            else:
                self._stop("", "")

    def _count(self, label: str, seconds: float, growth: int) -> None:
        report = self.report
        report.examples += 1
        report.outcomes[label] += 1
        report.peak_growth = max(report.peak_growth, growth)
        data = self.current[0] if self.current is not None else b""
        self.current = None
        if seconds > report.slowest_s:
            report.slowest_s, report.slowest_size = seconds, len(data)
        if growth > self.bounds.rss_growth:
            self._stop("memory", f"peak RSS grew by {growth // MiB} MiB", data)

    def _stop(self, kind: str, text: str, data: bytes | None = None) -> None:
        self.done = True
        self.report.elapsed_s = time.monotonic() - self.started
        if kind:
            self.report.failure_kind, self.report.failure = kind, text
            if data is not None and self.save_dir is not None:
                self.report.saved = save_input(self.save_dir, kind, data, text)
        if kind in ("hang", "memory", "died"):
            self.worker.kill()
        else:
            self.worker.stop()


def run_fuzz(
    config: FuzzConfig, bounds: Bounds | None = None, save_dir: Path | None = None
) -> FuzzReport:
    """One guarded hypothesis run, to its end (or its first failure)."""
    run = FuzzRun(config, bounds or Bounds(), save_dir)
    while not run.done:
        run.step(run.conn.poll(0.02))
    return run.report
