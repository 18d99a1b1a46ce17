"""The report side of ``make load`` (bench/load_report.py, bench/load_procs.py): percentiles,
RSS from /proc, the growth rule, process discovery by port, the table and the JSON file."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import load_report as r
from bench.load_procs import ordered, parse_listeners, pids_by_port


def test_percentile_matches_numpy_linear_interpolation() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 101, 999):
        values = [rng.expovariate(3.0) for _ in range(n)]
        for q in (0, 1, 50, 95, 99, 100):
            got = r.percentile(values, q)
            assert got == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-15)


def test_percentile_edges() -> None:
    assert r.percentile([], 50) is None
    assert r.percentile([4.0], 99) == 4.0
    assert r.percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    with pytest.raises(ValueError):
        r.percentile([1.0], 101)


def test_latency_stats_in_milliseconds() -> None:
    stats = r.latency_stats([0.1, 0.2, 0.3, 0.4, 1.0], (50, 95))
    assert stats == {"count": 5, "p50_ms": 300.0, "p95_ms": 880.0, "max_ms": 1000.0}
    assert r.latency_stats([], (50, 99)) == {
        "count": 0,
        "p50_ms": None,
        "p99_ms": None,
        "max_ms": None,
    }


STATUS = """Name:\tpython
State:\tS (sleeping)
VmPeak:\t 1084236 kB
VmHWM:\t  120000 kB
VmRSS:\t  100700 kB
RssAnon:\t   60000 kB
"""


def test_vmrss_is_read_from_the_status_text() -> None:
    assert r.parse_vmrss_kib(STATUS) == 100700
    assert r.parse_vmrss_kib("Name:\tzombie\nState:\tZ (zombie)\n") is None


def test_rss_of_this_process_and_of_a_missing_one(tmp_path: Path) -> None:
    mine = r.read_rss_kib(os.getpid())
    assert mine is not None and mine > 1024  # a Python interpreter is more than 1 MiB
    blob = bytearray(64 * 1024 * 1024)  # touched: 64 MiB more resident
    blob[::4096] = b"x" * len(blob[::4096])
    grown = r.read_rss_kib(os.getpid())
    assert grown is not None and grown - mine > 60 * 1024
    del blob
    assert r.read_rss_kib(999_999_999) is None
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text(STATUS)
    assert r.read_rss_kib(42, proc=tmp_path) == 100700


def test_growth_rule_allows_the_larger_of_50_mib_and_a_quarter() -> None:
    mib = 1024
    small = r.judge_growth(80 * mib, 129 * mib)  # +49 MiB of 80: within the 50 MiB floor
    assert small.ok and small.growth_mib == 49.0
    assert not r.judge_growth(80 * mib, 131 * mib).ok  # +51 MiB: beyond both
    big = r.judge_growth(400 * mib, 499 * mib)  # +99 MiB of 400 (24.75 %)
    assert big.ok and big.allowed_mib == 100.0
    assert not r.judge_growth(400 * mib, 501 * mib).ok
    assert r.judge_growth(400 * mib, 300 * mib).ok  # shrinking is fine
    assert r.judge_growth(400 * mib, 500 * mib).growth_pct == 25.0


def test_late_trend_in_mib_per_minute() -> None:
    mib = 1024
    rising = [(float(t), 100 * mib + t * mib) for t in range(0, 30, 2)]  # 1 MiB/s
    assert r.slope_mib_per_min(rising) == 60.0
    flat = [(float(t), 300 * mib + (mib if t % 4 else -mib)) for t in range(0, 30, 2)]
    slope = r.slope_mib_per_min(flat)
    assert slope is not None and abs(slope) < 1.0  # sawtooth on a plateau
    assert r.slope_mib_per_min(rising[:2]) is None
    assert r.slope_mib_per_min([(5.0, 1), (5.0, 2), (5.0, 3)]) is None
    rows = r.rss_rows({"db": 1}, {}, {"db": 100 * mib}, {"db": 130 * mib}, {}, {"db": rising})
    assert rows[0]["late_mib_per_min"] == 60.0


def test_rss_rows_and_verdict() -> None:
    mib = 1024
    pids = {"ingest": 10, "links": 11, "scanner": 12}
    cold = {"ingest": 80 * mib, "links": 70 * mib, "scanner": 130 * mib}
    warm = {"ingest": 120 * mib, "links": 75 * mib, "scanner": 160 * mib}
    end = {"ingest": 130 * mib, "links": 76 * mib, "scanner": 161 * mib}
    peak = {"ingest": 150 * mib, "links": 76 * mib, "scanner": 170 * mib}
    rows = r.rss_rows(pids, cold, warm, end, peak)
    assert [row["process"] for row in rows] == ["ingest", "links", "scanner"]
    assert rows[0]["cold_mib"] == 80.0 and rows[0]["growth_mib"] == 10.0
    assert rows[0]["peak_mib"] == 150.0 and all(row["ok"] for row in rows)
    assert r.growth_verdict(rows) == r.NO_GROWTH

    gone = r.rss_rows(pids, cold, warm, {**end, "links": None}, peak)
    assert [row["ok"] for row in gone] == [True, False, True]
    assert r.growth_verdict(gone) == "growth beyond the rule (or process gone) in: links"
    leaking = r.rss_rows(pids, cold, warm, {**end, "ingest": 300 * mib}, peak)
    assert "ingest" in r.growth_verdict(leaking)
    assert r.growth_verdict([]) == "no processes measured"


def test_errors_sorted_and_429_counted_apart() -> None:
    errors = {
        ("upload", "429", "rate_limited"): 5,
        ("reveal", "410", "used_up"): 2,
        ("status", "ReadTimeout", ""): 7,
        ("link", "429", "rate_limited"): 1,
    }
    rows = r.error_rows(errors)
    assert [row["count"] for row in rows] == [7, 5, 2, 1]
    assert rows[0] == {"op": "status", "status": "ReadTimeout", "code": "", "count": 7}
    assert r.count_429(errors) == 6
    assert r.count_429({}) == 0


def summary(rss: list[dict[str, Any]], errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "mode": "own",
        "config": {
            "uploaders": 8,
            "viewers": 16,
            "seconds": 60.0,
            "warmup_s": 15.0,
            "poll_s": 0.2,
            "scanners": 2,
            "rate_limits": "per-person keys",
        },
        "conditions": {
            "cpus": 2,
            "loadavg_start": [1.0, 1.0, 1.0],
            "loadavg_end": [2.0, 1.5, 1.0],
            "other_pytest_at_start": 0,
            "client_cpu_s": 12.3,
        },
        "uploads": {
            "accepted": 180,
            "per_s": 3.0,
            "post_p50_ms": 210.0,
            "post_p95_ms": 900.5,
            "verdicts": {"cleared": 179, "review": 1},
            "no_verdict": 0,
            "links_created": 170,
        },
        "upload_to_cleared": {"count": 179, "p50_ms": 431.0, "p95_ms": 777.0, "max_ms": 990.0},
        "reveals": {
            "count": 3000,
            "p50_ms": 55.0,
            "p99_ms": 140.0,
            "max_ms": 300.0,
            "per_s": 50.0,
            "bytes": 1,
            "idle_waits": 3,
        },
        "errors": errors,
        "rate_limited_429": sum(e["count"] for e in errors if e["status"] == "429"),
        "rss": rss,
        "growth_rule": r.GROWTH_RULE,
        "verdict": r.growth_verdict(rss),
    }


def test_render_shows_every_figure_and_the_verdict() -> None:
    mib = 1024
    rss = r.rss_rows(
        {"broker": 1, "ingest": 2},
        {},
        {"broker": 18 * mib, "ingest": 130 * mib},
        {"broker": 19 * mib, "ingest": 140 * mib},
        {},
    )
    text = r.render(
        summary(rss, [{"op": "upload", "status": "429", "code": "rate_limited", "count": 4}])
    )
    lines = text.splitlines()
    assert "8 uploaders, 16 viewers, 60 s measured after 15 s warm-up" in lines[0]
    assert any(
        "upload -> cleared p50 ms (polled every 0.2 s)" in ln and "431.0" in ln for ln in lines
    )
    assert any(ln.startswith("reveal p99 ms") and ln.endswith("140.0") for ln in lines)
    assert any(ln.startswith("HTTP 429 responses") and ln.endswith("4") for ln in lines)
    assert any(ln.split()[:4] == ["upload", "429", "rate_limited", "4"] for ln in lines)
    ingest = next(ln for ln in lines if ln.startswith("ingest "))
    assert ingest.split() == ["ingest", "2", "-", "130.0", "140.0", "-", "10.0", "7.7", "-", "yes"]
    assert lines[-1] == "Verdict: no unbounded growth"
    assert "Errors by operation" in text and "none" not in text.split("Errors by")[1][:40]


def test_render_without_errors_and_a_failed_process() -> None:
    rss = r.rss_rows({"links": 3}, {}, {"links": 1000}, {"links": None}, {})
    text = r.render(summary(rss, []))
    assert "Errors by operation, status and code:\n  none" in text
    row = next(ln.split() for ln in text.splitlines() if ln.split()[:2] == ["links", "3"])
    assert row[-1] == "NO" and row[4] == "-"  # no end RSS: the process was gone
    assert text.splitlines()[-1].endswith("in: links")


def test_table_columns_line_up() -> None:
    out = r.table(["a", "long header"], [["xx", 1.25], ["y", None]]).splitlines()
    assert out[0] == "a   long header"
    assert out[1] == "xx  1.2"  # floats to one decimal (round-half-even of 1.25)
    assert out[2] == "y   -"


def test_json_written_atomically_where_asked(tmp_path: Path) -> None:
    doc = summary([], [])
    path = r.write_json(doc, tmp_path / "var" / "load" / "last.json")
    assert json.loads(path.read_text()) == doc
    assert not list(path.parent.glob("*.tmp"))


TCP = """  sl  local_address rem_address st tx_queue rx_queue tr tm->when retr uid timeout inode
   0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1F42 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
   2: 00000000:6B1D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1
"""


def test_listening_sockets_parsed_from_proc_net_tcp() -> None:
    assert parse_listeners(TCP) == {0x1F41: 4242, 0x6B1D: 4444}  # the established one is not


def test_process_found_by_the_port_it_listens_on() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        found = pids_by_port({"ingest": port, "links": 1})  # nobody listens on port 1
    assert found == {"ingest": os.getpid()}


def test_processes_in_report_order() -> None:
    names = ["scanner-1", "rooms", "scanner", "broker", "ingest", "scanner-10", "database"]
    assert ordered(names) == [
        "broker",
        "database",
        "ingest",
        "rooms",
        "scanner",
        "scanner-1",
        "scanner-10",
    ]


def test_the_broker_and_database_are_judged_alive_not_by_growth() -> None:
    mib = 1024
    pids = {"database": 1, "broker": 2, "ingest": 3}
    warm = {"database": 200 * mib, "broker": 19 * mib, "ingest": 120 * mib}
    grown = {"database": 1000 * mib, "broker": 400 * mib, "ingest": 125 * mib}
    rows = r.rss_rows(pids, {}, warm, grown, {})
    assert [(row["process"], row["ok"], row["judged"]) for row in rows] == [
        ("database", True, False),
        ("broker", True, False),
        ("ingest", True, True),
    ]
    assert rows[0]["growth_mib"] == 800.0  # still reported
    assert r.growth_verdict(rows) == r.NO_GROWTH
    dead = r.rss_rows(pids, {}, warm, {**grown, "database": None}, {})
    assert r.growth_verdict(dead) == "growth beyond the rule (or process gone) in: database"
