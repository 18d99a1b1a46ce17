"""``make load``: concurrent uploaders and viewers against the local stack for a fixed time.

The stack: by default this starts its own, exactly as ``make run`` does (``deploy.local.stack
.Stack``: broker, database, ingest, links, review, rooms and one scanner per core, each its own
process) on free ports in a temporary directory, and stops it afterwards; Prometheus is not
started. One setting differs from ``make run``: ``CHATPIC_TRUSTED_PROXIES=127.0.0.1/32``, so
the X-Forwarded-For address of each simulated person is believed and every person has their own
rate-limit key (the upload limit itself stays at its default, 30 per 10 minutes per person;
uploaders switch to a new person every 10 uploads). With ``--attach`` (or ``LOAD_ATTACH=1``)
it loads an already running ``make run`` stack instead, at the ports ``make run`` uses
(``CHATPIC_<NAME>_PORT`` as for ``make run``); such a stack does not trust the proxy header, so
every upload shares one rate-limit key and 429s are to be expected after the first 30.

The load (see bench/load_clients.py): ``LOAD_UPLOADERS`` (8) uploaders and ``LOAD_VIEWERS`` (16)
viewers run for ``LOAD_WARMUP_S`` (15) s unmeasured, then ``LOAD_SECONDS`` (60) s measured.
Uploads accepted in the window are followed to their verdict afterwards (up to
``LOAD_DRAIN_S``, 60 s). Upload -> cleared is from the 202 to the first status poll that
answers ``cleared``, polled every ``LOAD_POLL_S`` (0.2) s; links allow ``LOAD_LINK_VIEWS`` (50)
views each.

Reported: uploads accepted per second, upload POST p50/p95, upload -> cleared p50/p95, reveal
(reveal + image GET) p50/p99, verdicts, errors by operation/status/code with the 429s counted
apart, and the RSS of every service process (VmRSS from /proc) before the load, at the end of
the warm-up and at the end of the run, judged by the rule in bench/load_report.py. Printed as a
table and written as JSON to ``var/load/last.json`` (``LOAD_JSON``). Exit code 0 when the run
completed, whatever the figures; 1 if a stack process died or the verdict is not "no unbounded
growth".

Run: ``make load`` or ``python -m bench.load [--attach] [--uploaders N] [--viewers N]
[--seconds S]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import load_report as report
from bench.load_clients import Load, load_photos, uploader, viewer
from bench.load_procs import pids_by_port, port_map, stack_pids
from deploy.local.stack import ROOT, Stack, StackError, StackPorts, http_ok
from tests.unit.corpus import corpus_dir

RSS_SAMPLE_S = 2.0
TRUSTED_PROXY = "127.0.0.1/32"


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {value!r}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("--uploaders", type=int, default=int(env_number("LOAD_UPLOADERS", 8)))
    p.add_argument("--viewers", type=int, default=int(env_number("LOAD_VIEWERS", 16)))
    p.add_argument("--seconds", type=float, default=env_number("LOAD_SECONDS", 60))
    p.add_argument("--warmup", type=float, default=env_number("LOAD_WARMUP_S", 15))
    p.add_argument("--drain", type=float, default=env_number("LOAD_DRAIN_S", 60))
    p.add_argument("--poll", type=float, default=env_number("LOAD_POLL_S", 0.2))
    p.add_argument("--link-views", type=int, default=int(env_number("LOAD_LINK_VIEWS", 50)))
    p.add_argument(
        "--attach",
        action="store_true",
        default=os.environ.get("LOAD_ATTACH", "") not in ("", "0"),
        help="load the stack `make run` started (its ports from CHATPIC_<NAME>_PORT)",
    )
    p.add_argument(
        "--json", type=Path, default=Path(os.environ.get("LOAD_JSON", ROOT / "var/load/last.json"))
    )
    args = p.parse_args(argv)
    if args.uploaders < 1 or args.viewers < 0 or args.seconds <= 0 or args.poll <= 0:
        p.error("need at least 1 uploader, 0+ viewers, a positive duration and poll interval")
    if not 1 <= args.link_views <= 1000:
        p.error("--link-views must be 1..1000 (the links service's cap)")
    return args


def scanner_count() -> int:
    """As make run: CHATPIC_SCANNERS, else one scanner process per core."""
    value = os.environ.get("CHATPIC_SCANNERS", str(os.cpu_count() or 1))
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise SystemExit(f"CHATPIC_SCANNERS must be 1..64, not {value!r}")
    return int(value)


def other_pytest_processes() -> int:
    """How many pytest processes other than ours run now (someone else's tests load the
    machine; the report says so)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"pytest" in cmd and b"timeout " not in cmd[:8]:
            count += 1
    return count


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class RssWatch:
    """Samples every process's RSS every few seconds; keeps each one's peak and the series
    (seconds since the watch began, KiB), which goes into the JSON."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.peak: dict[str, int | None] = {}
        self.series: dict[str, list[tuple[float, int]]] = {name: [] for name in pids}
        self.began = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, int | None]:
        at = round(time.perf_counter() - self.began, 1)
        now = {name: report.read_rss_kib(pid) for name, pid in self.pids.items()}
        with self._lock:
            for name, kib in now.items():
                if kib is not None:
                    self.peak[name] = max(kib, self.peak.get(name) or 0)
                    self.series[name].append((at, kib))
        return now

    def between(self, start: float, end: float) -> dict[str, list[tuple[float, int]]]:
        with self._lock:
            return {n: [s for s in ss if start <= s[0] <= end] for n, ss in self.series.items()}

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self.sample()

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def run_load(args: argparse.Namespace, load: Load, pids: Mapping[str, int]) -> dict[str, Any]:
    """Warm up, measure, drain; the raw figures and RSS samples for the summary."""
    watch = RssWatch(pids)
    cold = watch.sample()
    threads = [
        threading.Thread(target=uploader, args=(load, i, args.uploaders), daemon=True)
        for i in range(args.uploaders)
    ] + [threading.Thread(target=viewer, args=(load, i), daemon=True) for i in range(args.viewers)]
    conditions: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "other_pytest_at_start": other_pytest_processes(),
    }
    with watch:
        for t in threads:
            t.start()
        print(f"Warm-up {args.warmup:g} s...", flush=True)
        time.sleep(args.warmup)
        warm = watch.sample()
        conditions["loadavg_start"] = loadavg()
        cpu0, t0 = time.process_time(), time.perf_counter()
        load.measuring.set()
        measure_from = time.perf_counter() - watch.began
        print(f"Measuring {args.seconds:g} s...", flush=True)
        time.sleep(args.seconds)
        load.measuring.clear()
        load.stop.set()
        elapsed = time.perf_counter() - t0
        end = watch.sample()
        conditions["loadavg_end"] = loadavg()
        conditions["client_cpu_s"] = round(time.process_time() - cpu0, 1)
        conditions["other_pytest_at_end"] = other_pytest_processes()
        measure_to = time.perf_counter() - watch.began
        print(f"Waiting up to {args.drain:g} s for the last verdicts...", flush=True)
        deadline = time.monotonic() + args.drain
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        load.abort.set()
        for t in threads:
            t.join(70)
    late = watch.between((measure_from + measure_to) / 2, measure_to)
    return {
        "elapsed": elapsed,
        "conditions": conditions,
        "rss": report.rss_rows(pids, cold, warm, end, watch.peak, late),
        "rss_series_kib": {
            "measured_from_s": round(measure_from, 1),
            "measured_to_s": round(measure_to, 1),
            **watch.series,
        },
    }


def summarize(
    args: argparse.Namespace,
    load: Load,
    measured: Mapping[str, Any],
    mode: str,
    scanners: int,
    rate_limits: str,
    dead: list[str],
) -> dict[str, Any]:
    rec, elapsed = load.recorder, float(measured["elapsed"])
    post = report.latency_stats(rec.upload_post_s, (50, 95))
    rss = measured["rss"]
    verdict = report.growth_verdict(rss)
    if dead:
        verdict = f"stack process(es) died: {', '.join(dead)}; " + verdict
    return {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "config": {
            "uploaders": args.uploaders,
            "viewers": args.viewers,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "poll_s": args.poll,
            "link_views": args.link_views,
            "scanners": scanners,
            "photos": len(load.photos),
            "rate_limits": rate_limits,
        },
        "conditions": measured["conditions"],
        "uploads": {
            "accepted": rec.accepted,
            "per_s": round(rec.accepted / elapsed, 2),
            "post_p50_ms": post["p50_ms"],
            "post_p95_ms": post["p95_ms"],
            "verdicts": dict(sorted(rec.verdicts.items())),
            "no_verdict": rec.no_verdict,
            "links_created": rec.links_created,
        },
        "upload_to_cleared": report.latency_stats(rec.cleared_s, (50, 95)),
        "reveals": {
            **report.latency_stats(rec.reveal_s, (50, 99)),
            "per_s": round(len(rec.reveal_s) / elapsed, 2),
            "bytes": rec.bytes_served,
            "idle_waits": rec.idle_waits,
        },
        "errors": report.error_rows(rec.errors),
        "rate_limited_429": report.count_429(rec.errors),
        "rss": rss,
        "rss_series_kib": measured["rss_series_kib"],
        "growth_rule": report.GROWTH_RULE,
        "verdict": verdict,
        "dead": dead,
    }


def print_log_tails(var_dir: Path) -> None:
    for log in sorted((var_dir / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        print(f"--- last lines of {log.name}", *lines, sep="\n", file=sys.stderr)


def with_stack(
    args: argparse.Namespace, scanners: int, body: Callable[[Stack], dict[str, Any]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chatpic-load-") as tmp:
        stack = Stack(
            var_dir=Path(tmp) / "var",
            ports=StackPorts.free(),
            scanners=scanners,
            extra_env={"CHATPIC_TRUSTED_PROXIES": TRUSTED_PROXY},
        )
        print(f"Starting broker, database and services ({scanners} scanners)...", flush=True)
        stack.start()
        try:
            return body(stack)
        except BaseException:
            print_log_tails(stack.var_dir)
            raise
        finally:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    photos = load_photos(corpus_dir())
    scanners = scanner_count()

    def make_load(ports: StackPorts) -> Load:
        return Load(
            ingest_url=f"http://127.0.0.1:{ports.ingest}",
            links_url=f"http://127.0.0.1:{ports.links}",
            photos=photos,
            poll_s=args.poll,
            link_views=args.link_views,
            verdict_timeout_s=max(120.0, args.drain),
        )

    if args.attach:
        try:
            ports = StackPorts.from_env(os.environ)
        except StackError as exc:
            raise SystemExit(f"error: {exc}") from None
        for name in ("ingest", "links"):
            if not http_ok(f"http://127.0.0.1:{getattr(ports, name)}/readyz"):
                raise SystemExit(
                    f"error: no ready {name} at port {getattr(ports, name)}; "
                    "start `make run` first (or drop --attach)"
                )
        pids = pids_by_port(port_map(ports, scanners))
        load = make_load(ports)
        measured = run_load(args, load, pids)
        limits = (
            "attached to a running stack with its own settings; `make run` trusts no proxy, "
            "so every simulated person shares one upload rate-limit key"
        )
        summary = summarize(args, load, measured, "attached", scanners, limits, [])
    else:

        def body(stack: Stack) -> dict[str, Any]:
            load = make_load(stack.ports)
            measured = run_load(args, load, stack_pids(stack))
            limits = (
                f"default limits (30 uploads / 600 s per client); CHATPIC_TRUSTED_PROXIES="
                f"{TRUSTED_PROXY} and one X-Forwarded-For address per simulated person "
                f"(a new uploader person every {load.uploads_per_person} uploads)"
            )
            return summarize(args, load, measured, "own", scanners, limits, stack.dead())

        summary = with_stack(args, scanners, body)
    print()
    print(report.render(summary))
    path = report.write_json(summary, args.json)
    print(f"\nJSON: {path}")
    return 0 if summary["verdict"] == report.NO_GROWTH else 1


if __name__ == "__main__":
    sys.exit(main())
