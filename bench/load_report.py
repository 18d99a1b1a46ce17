"""The pure half of ``make load``: percentiles, resident memory from /proc, the growth rule,
the summary document, its table and its JSON file. No servers, no clocks: unit-tested."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KIB_PER_MIB = 1024
# The growth rule: from the end of the warm-up to the end of the run, a process may grow by at
# most this fraction of its warm-up RSS or by this many MiB, whichever is larger.
GROWTH_MAX_FRACTION = 0.25
GROWTH_MAX_MIB = 50.0
GROWTH_RULE = (
    f"end RSS - warm-up RSS <= max({GROWTH_MAX_MIB:g} MiB, {GROWTH_MAX_FRACTION:.0%} of "
    "warm-up RSS) for every process"
)
NO_GROWTH = "no unbounded growth"
# The local broker and database hold the data itself in memory (Tansu keeps every record;
# SecantusDB's cache grows with the photos stored): their growth is reported, not judged.
DATA_STORES = frozenset({"broker", "database"})


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (as
    numpy's default); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def latency_stats(samples: Sequence[float], quantiles: Sequence[float]) -> dict[str, Any]:
    """Count, the given percentiles and max of ``samples`` (seconds), in milliseconds."""
    out: dict[str, Any] = {"count": len(samples)}
    for q in quantiles:
        out[f"p{q:g}_ms"] = ms(percentile(samples, q))
    out["max_ms"] = ms(max(samples)) if samples else None
    return out


# ---- resident memory -----------------------------------------------------------------------


def parse_vmrss_kib(status_text: str) -> int | None:
    """VmRSS in KiB from the text of /proc/<pid>/status (None if absent, e.g. a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1])
    return None


def read_rss_kib(pid: int, proc: Path = Path("/proc")) -> int | None:
    """A process's resident set size in KiB, None if it is gone or unreadable."""
    try:
        return parse_vmrss_kib((proc / str(pid) / "status").read_text())
    except OSError:
        return None


def slope_mib_per_min(samples: Sequence[tuple[float, int]]) -> float | None:
    """Least-squares slope of (seconds, KiB) samples in MiB per minute; None for fewer than
    three samples or no spread in time. A plateau reads about 0, a leak stays positive."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return round(cov / var_t * 60 / KIB_PER_MIB, 1)


@dataclass(frozen=True)
class Growth:
    ok: bool
    growth_mib: float
    growth_pct: float
    allowed_mib: float


def judge_growth(
    warm_kib: int,
    end_kib: int,
    max_fraction: float = GROWTH_MAX_FRACTION,
    max_mib: float = GROWTH_MAX_MIB,
) -> Growth:
    """Whether one process kept within the growth rule between warm-up end and run end."""
    growth_mib = (end_kib - warm_kib) / KIB_PER_MIB
    allowed_mib = max(max_mib, warm_kib / KIB_PER_MIB * max_fraction)
    pct = (end_kib - warm_kib) / warm_kib * 100 if warm_kib > 0 else 0.0
    return Growth(growth_mib <= allowed_mib, round(growth_mib, 1), round(pct, 1), allowed_mib)


def rss_rows(
    pids: Mapping[str, int],
    cold: Mapping[str, int | None],
    warm: Mapping[str, int | None],
    end: Mapping[str, int | None],
    peak: Mapping[str, int | None],
    late: Mapping[str, Sequence[tuple[float, int]]] | None = None,
) -> list[dict[str, Any]]:
    """One row per process: RSS (MiB) at cold start, at warm-up end, at run end, the peak seen,
    the growth judged from warm-up end to run end (a process gone by the end fails), and the
    trend over ``late`` samples (the second half of the run), in MiB per minute."""

    def mib(value: int | None) -> float | None:
        return None if value is None else round(value / KIB_PER_MIB, 1)

    rows = []
    for name, pid in pids.items():
        w, e = warm.get(name), end.get(name)
        row: dict[str, Any] = {
            "process": name,
            "pid": pid,
            "cold_mib": mib(cold.get(name)),
            "warm_mib": mib(w),
            "end_mib": mib(e),
            "peak_mib": mib(peak.get(name)),
            "growth_mib": None,
            "growth_pct": None,
            "late_mib_per_min": slope_mib_per_min((late or {}).get(name, ())),
            "ok": False,
            "judged": name not in DATA_STORES,
        }
        if w is not None and e is not None:
            g = judge_growth(w, e)
            row.update(growth_mib=g.growth_mib, growth_pct=g.growth_pct, ok=g.ok)
        if not row["judged"]:
            row["ok"] = e is not None  # alive is all that is asked: its growth is the data
        rows.append(row)
    return rows


def growth_verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    bad = [str(r["process"]) for r in rows if not r["ok"]]
    if not rows:
        return "no processes measured"
    if not bad:
        return NO_GROWTH
    return "growth beyond the rule (or process gone) in: " + ", ".join(bad)


# ---- errors --------------------------------------------------------------------------------


def error_rows(errors: Mapping[tuple[str, str, str], int]) -> list[dict[str, Any]]:
    """(operation, HTTP status or exception name, error code) -> count, most frequent first."""
    ordered = sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"op": op, "status": st, "code": code, "count": n} for (op, st, code), n in ordered]


def count_429(errors: Mapping[tuple[str, str, str], int]) -> int:
    return sum(n for (_, status, _), n in errors.items() if status == "429")


# ---- output --------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in head], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def render(summary: Mapping[str, Any]) -> str:
    """The human report of a summary document (as built by bench.load)."""
    cfg, up, clr, rev = (summary[k] for k in ("config", "uploads", "upload_to_cleared", "reveals"))
    cond = summary["conditions"]
    out = [
        f"ChatPic load: {cfg['uploaders']} uploaders, {cfg['viewers']} viewers, "
        f"{cfg['seconds']:g} s measured after {cfg['warmup_s']:g} s warm-up "
        f"({summary['mode']} stack, {cfg['scanners']} scanner process(es))",
        f"Conditions: {cond['cpus']} CPUs, load average {cond['loadavg_start']} at start, "
        f"{cond['loadavg_end']} at end; other pytest processes at start: "
        f"{cond['other_pytest_at_start']}, at end: {cond.get('other_pytest_at_end', '-')}; "
        f"load generator CPU {cond['client_cpu_s']:.1f} s",
        f"Rate limits: {cfg['rate_limits']}",
        "",
        table(
            ["metric", "value"],
            [
                ["uploads accepted (202)", up["accepted"]],
                ["uploads accepted / s", up["per_s"]],
                [
                    "upload POST p50 / p95 ms",
                    f"{_fmt(up['post_p50_ms'])} / {_fmt(up['post_p95_ms'])}",
                ],
                [f"upload -> cleared p50 ms (polled every {cfg['poll_s']:g} s)", clr["p50_ms"]],
                ["upload -> cleared p95 ms", clr["p95_ms"]],
                ["upload -> cleared max ms", clr["max_ms"]],
                ["verdicts", ", ".join(f"{k} {v}" for k, v in up["verdicts"].items()) or "-"],
                ["accepted without a verdict in time", up["no_verdict"]],
                ["links created", up["links_created"]],
                ["reveals (reveal + image GET)", rev["count"]],
                ["reveals / s", rev["per_s"]],
                ["reveal p50 ms", rev["p50_ms"]],
                ["reveal p99 ms", rev["p99_ms"]],
                ["reveal max ms", rev["max_ms"]],
                ["viewer waits for a link", rev["idle_waits"]],
                ["HTTP 429 responses", summary["rate_limited_429"]],
            ],
        ),
        "",
        "Errors by operation, status and code:",
        table(
            ["op", "status", "code", "count"],
            [[e["op"], e["status"], e["code"], e["count"]] for e in summary["errors"]],
        )
        if summary["errors"]
        else "  none",
        "",
        "Resident memory (MiB): cold = before any load, warm = end of warm-up, end = end of run;"
        " MiB/min late = trend over the second half of the measured run (about 0 on a plateau)",
        table(
            [
                "process",
                "pid",
                "cold",
                "warm",
                "end",
                "peak",
                "growth",
                "growth %",
                "MiB/min late",
                "ok",
            ],
            [
                [
                    r["process"],
                    r["pid"],
                    r["cold_mib"],
                    r["warm_mib"],
                    r["end_mib"],
                    r["peak_mib"],
                    r["growth_mib"],
                    r["growth_pct"],
                    r.get("late_mib_per_min"),
                    ("yes" if r["ok"] else "NO") + ("" if r.get("judged", True) else " (data)"),
                ]
                for r in summary["rss"]
            ],
        ),
        f"Rule: {summary['growth_rule']}; the broker and the database (data) are not judged",
        f"Verdict: {summary['verdict']}",
    ]
    return "\n".join(out)


def write_json(summary: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
