"""The Grafana dashboard and provisioning: the JSON is a loadable dashboard, every panel reads
the provisioned Prometheus, and every metric any PromQL expression (dashboard and rules) names
is one the services declare or a recording rule defines."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from deploy.local.stack import ROOT, SERVICES

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "chatpic-pipeline.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "chatpic.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules"
PROMETHEUS_BUILTINS = {"up", "ALERTS"}  # series Prometheus makes itself
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left"}
KEYWORDS |= {"group_right", "offset", "bool", "inf", "nan"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def data_panels() -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard()["panels"]) if p["type"] != "row"]


def provisioned_datasource() -> dict[str, Any]:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return dict(source)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (in matchers or by/on/... lists), durations or Grafana variables."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"'(?:\\.|[^'\\])*'", "''", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    s = re.sub(r"\{[^}]*\}", "{}", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for match in re.finditer(r"(?<![\w:.])[a-zA-Z_:][\w:]*", s):
        if s[match.end() :].lstrip().startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def declared_metrics() -> set[str]:
    """Every series name the services' metric modules declare, as Prometheus scrapes them."""
    modules = [f"services.{name}.metrics" for name in SERVICES]
    modules += [
        f"services.shared.{path.stem}"
        for path in sorted((ROOT / "services" / "shared").glob("*metrics*.py"))
    ]
    for module in modules:
        importlib.import_module(module)
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def rule_exprs() -> list[str]:
    return [
        str(rule["expr"])
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def recorded_names() -> set[str]:
    doc = yaml.safe_load((RULES / "recording.yml").read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in data_panels() for t in p.get("targets", [])]


# ---- the dashboard ----------------------------------------------------------------------


def test_dashboard_is_identified_and_versioned() -> None:
    dash = dashboard()
    assert dash["uid"] == "chatpic-pipeline" and dash["title"].strip()
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert "id" not in dash or dash["id"] is None  # provisioned dashboards carry no db id


def test_every_panel_reads_the_provisioned_prometheus() -> None:
    source = provisioned_datasource()
    assert source["type"] == "prometheus" and source["uid"]
    wanted = {"type": "prometheus", "uid": source["uid"]}
    panels = data_panels()
    assert len(panels) >= 12
    for panel in panels:
        assert panel.get("datasource") == wanted, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", wanted) == wanted, panel["title"]
            assert target["expr"].strip(), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_panel_ids_are_unique_and_every_panel_has_a_place_on_the_grid() -> None:
    panels = list(all_panels(dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), ids
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_dashboard_covers_the_pipeline() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    for needed in (
        "chatpic_ingest_uploads_total",  # upload rate, refusals by code
        "verdict:chatpic_scanner_images:ratio_rate5m",  # verdict mix
        "chatpic_scanner_scan_seconds_bucket",  # scan latency by stage
        "group_topic:chatpic_kafka_consumer_lag:sum",  # consumer lag
        "chatpic_ingest_oldest_pending_age_seconds",
        "chatpic_links_reveals_total",
        "chatpic_links_bytes_served_total",
        "chatpic_review_queue_depth",
        "chatpic_review_oldest_job_age_seconds",
        "job:chatpic_http_requests_5xx:ratio_rate5m",  # 5xx ratio per service
        "chatpic_dependency_up",
    ):
        assert needed in used, needed


# ---- provisioning -------------------------------------------------------------------------


def test_provisioning_points_at_prometheus_and_the_dashboards_folder() -> None:
    source = provisioned_datasource()
    assert source["url"] == "http://prometheus:9090" and source["access"] == "proxy"
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    compose = ROOT / "deploy" / "compose.yaml"
    if compose.exists():  # the compose file mounts deploy/grafana/dashboards there
        volumes = yaml.safe_load(compose.read_text())["services"]["grafana"]["volumes"]
        assert any(str(v).startswith("./grafana/dashboards:" + path) for v in volumes), volumes


# ---- metric names ---------------------------------------------------------------------------


def test_the_metric_name_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (stage, le) (rate(a_bucket{stage="x",le=~"1.*"}'
        "[$__rate_interval]))) / on (queue) group_left b:rec:sum offset 10m > 1e3 "
        "and ignoring(x) max_over_time(c[5m:1m]) or vector(0) unless d"
    )
    assert metric_names(expr) == {"a_bucket", "b:rec:sum", "c", "d"}


def test_every_metric_in_the_dashboard_and_rules_is_declared_by_a_service() -> None:
    known = declared_metrics() | recorded_names() | PROMETHEUS_BUILTINS
    assert "chatpic_http_requests_total" in known and "chatpic_scanner_scan_seconds_bucket" in known
    used: dict[str, set[str]] = {}
    for source, exprs in (("dashboard", dashboard_exprs()), ("rules", rule_exprs())):
        for expr in exprs:
            for name in metric_names(expr) - known:
                used.setdefault(name, set()).add(source)
    assert used == {}, f"metrics no service declares: {used}"


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule, Grafana variables filled)."""
    promtool = shutil.which("promtool")
    required = os.environ.get("CHATPIC_REQUIRE_PROMETHEUS") == "1" or bool(os.environ.get("CI"))
    if promtool is None:
        if required:
            pytest.fail("promtool is required (CHATPIC_REQUIRE_PROMETHEUS) but missing")
        pytest.skip("promtool is not installed: `make prometheus` (Debian's prometheus package)")
    rules = [
        {"record": f"dashboard:check_{i}:expr", "expr": re.sub(r"\$__\w+", "1m", expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
