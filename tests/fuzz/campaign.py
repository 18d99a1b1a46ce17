"""``make fuzz``: the long hostile-input campaign against the intake (``sanitize``).

Phase 1: every generated variant of every corpus file and every hand-made case at full size
(``variants.campaign_cases``: ~1,600 inputs, including 20 MB parser bombs and 10 MB ICC
profiles), through the guarded workers. Phase 2: hypothesis mutation fuzzing (``mutators``) of
all corpus files, in runs of ``--chunk`` examples with fresh random seeds, one run per worker at
a time, until ``--examples`` examples or ``--seconds`` have been spent. Each input is bounded by
``--timeout`` seconds and ``--rss-mib`` MiB of RSS growth (see ``guard``).

Every failing input (bad verdict, hang, memory, dead worker; a property failure after
hypothesis has shrunk it) is written to ``--out`` (default var/fuzz/) with a .txt description.
Exit status 1 when anything failed. Settings also come from the environment: FUZZ_EXAMPLES,
FUZZ_SECONDS, FUZZ_WORKERS, FUZZ_SEED, FUZZ_TIMEOUT_S, FUZZ_RSS_MIB.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path

from tests.fuzz.guard import Bounds, GuardedPool, MiB, Result
from tests.fuzz.hypo import FuzzConfig, FuzzReport, FuzzRun
from tests.fuzz.variants import campaign_cases

REPO = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=int(_env("FUZZ_EXAMPLES", "20000")))
    parser.add_argument("--seconds", type=float, default=float(_env("FUZZ_SECONDS", "1800")))
    parser.add_argument("--workers", type=int, default=int(_env("FUZZ_WORKERS", "2")))
    parser.add_argument("--seed", type=int, default=int(_env("FUZZ_SEED", "0")) or None)
    parser.add_argument("--timeout", type=float, default=float(_env("FUZZ_TIMEOUT_S", "60")))
    parser.add_argument("--rss-mib", type=int, default=int(_env("FUZZ_RSS_MIB", "1536")))
    parser.add_argument("--chunk", type=int, default=2000, help="examples per hypothesis run")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "fuzz")
    parser.add_argument("--skip-variants", action="store_true", help="phase 2 only")
    return parser.parse_args(argv)


def variants_phase(args: argparse.Namespace, bounds: Bounds) -> list[Result]:
    started = time.monotonic()
    results: list[Result] = []
    with GuardedPool(args.workers, bounds, save_dir=args.out) as pool:
        for result in pool.run(campaign_cases()):
            results.append(result)
            if result.failed:
                print(f"  FAIL {result.describe()}", flush=True)
            elif len(results) % 200 == 0:
                print(f"  {len(results)} inputs...", flush=True)
    elapsed = time.monotonic() - started
    kinds = Counter(r.kind for r in results)
    codes = Counter(r.verdict.code for r in results if r.verdict and r.verdict.code)
    slowest = sorted(results, key=lambda r: -r.seconds)[:5]
    peak = max((r.rss_growth for r in results), default=0)
    total = sum(r.size for r in results)
    print(
        f"variants: {len(results)} inputs ({total / MiB:.0f} MiB) in {elapsed:.1f} s, "
        f"{len(results) / elapsed:.1f} files/s, {total / MiB / elapsed:.1f} MiB/s; "
        f"peak RSS growth of one input {peak // MiB} MiB"
    )
    print(f"  outcomes: {dict(kinds)}")
    print(f"  refusal codes: {dict(codes)}")
    for result in slowest:
        print(f"  slow: {result.describe()}")
    return results


def fuzz_phase(args: argparse.Namespace, bounds: Bounds) -> list[FuzzReport]:
    base = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print(f"fuzz: seed {base} (FUZZ_SEED={base} repeats this run's examples)", flush=True)
    started = time.monotonic()
    deadline = started + args.seconds
    reports: list[FuzzReport] = []
    runs: list[FuzzRun] = []
    planned, number = 0, 0

    def start_run() -> None:
        nonlocal planned, number
        count = min(args.chunk, args.examples - planned)
        config = FuzzConfig(
            examples=count,
            seed=base + number,
            derandomize=False,
            max_seed_bytes=20 * MiB,
            deadline_s=None,
        )
        runs.append(FuzzRun(config, bounds, args.out))
        planned += count
        number += 1

    while True:
        while len(runs) < args.workers and planned < args.examples and time.monotonic() < deadline:
            start_run()
        if not runs:
            break
        ready = wait([run.conn for run in runs], timeout=0.02)
        for run in list(runs):
            run.step(run.conn in ready)
            if time.monotonic() > deadline:
                run.cut_short()
            if run.done:
                runs.remove(run)
                reports.append(run.report)
                _print_run(run)
                planned -= run.config.examples - run.report.examples  # cut short: run the rest
    elapsed = time.monotonic() - started
    examples = sum(r.examples for r in reports)
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report.outcomes)
    print(
        f"fuzz: {examples} examples in {elapsed:.1f} s ({examples / max(elapsed, 1e-9):.1f}/s), "
        f"{len(reports)} runs, {sum(1 for r in reports if r.failure)} failed; peak RSS growth "
        f"{max((r.peak_growth for r in reports), default=0) // MiB} MiB; slowest example "
        f"{max((r.slowest_s for r in reports), default=0.0):.2f} s"
    )
    print(f"  outcomes: {dict(outcomes.most_common())}")
    return reports


def _print_run(run: FuzzRun) -> None:
    report = run.report
    status = f"FAILED ({report.failure_kind}, saved {report.saved})" if report.failure else "ok"
    print(f"  run seed {run.config.seed}: {report.summary()} -> {status}", flush=True)
    if report.failure:
        print("    " + report.failure.strip().replace("\n", "\n    ")[-3000:], flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    bounds = Bounds(seconds=args.timeout, rss_growth=args.rss_mib * MiB)
    print(
        f"make fuzz: {args.workers} workers, {args.timeout:.0f} s and {args.rss_mib} MiB per "
        f"input; failing inputs -> {args.out}",
        flush=True,
    )
    failed = 0
    if not args.skip_variants:
        failed += sum(1 for r in variants_phase(args, bounds) if r.failed)
    failed += sum(1 for r in fuzz_phase(args, bounds) if r.failure)
    print("make fuzz: " + (f"{failed} FAILURES (see {args.out})" if failed else "no failures"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
