"""The Prometheus configuration and rules as promtool sees them: they parse, the alert unit
tests in deploy/prometheus/tests pass, and those unit tests would catch an alert that never
fires or always fires. Needs promtool (`make prometheus`); skipped without it unless
CHATPIC_REQUIRE_PROMETHEUS=1 (set by `make test`) or CI is set."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local.stack import ROOT, SERVICES, StackPorts, prometheus_config

PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "rules"
UNIT_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
REQUIRED = os.environ.get("CHATPIC_REQUIRE_PROMETHEUS") == "1" or bool(os.environ.get("CI"))
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not REQUIRED,
    reason="promtool is not installed: `make prometheus` installs Debian's prometheus package "
    "(CHATPIC_REQUIRE_PROMETHEUS=1 makes this a failure)",
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is required (CHATPIC_REQUIRE_PROMETHEUS) but missing"
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load(RULES / "alerts.yml")["groups"] for r in g["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for g in load(RULES / "recording.yml")["groups"] for r in g["rules"]}


# ---- promtool --------------------------------------------------------------------------


@needs_promtool
def test_rule_files_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES / "recording.yml", RULES / "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_production_config_passes_promtool_check_config() -> None:
    result = promtool("check", "config", PROM_DIR / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


@needs_promtool
def test_kubernetes_config_passes_promtool_check_config(tmp_path: Path) -> None:
    """Debian's build has no Kubernetes discovery, so the same config with static targets in
    its place is checked (relabelling, rule files), and the discovery block by its shape."""
    config = load(PROM_DIR / "prometheus-k8s.yml")
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabel_targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"job", "__address__", "__metrics_path__"} <= relabel_targets
    result = promtool("check", "config", PROM_DIR / "prometheus-k8s.yml")
    output = result.stdout + result.stderr
    if result.returncode != 0 and "field kubernetes_sd_configs not found" in output:
        static = copy.deepcopy(config)
        del static["scrape_configs"][0]["kubernetes_sd_configs"]
        static["scrape_configs"][0]["static_configs"] = [{"targets": ["10.0.0.1:8001"]}]
        (tmp_path / "rules").symlink_to(RULES)
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(static))
        result = promtool("check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_local_stack_config_passes_promtool_check_config(tmp_path: Path) -> None:
    targets = {name: [f"127.0.0.1:{8001 + i}"] for i, name in enumerate(SERVICES)}
    targets["scanner"] = ["127.0.0.1:8004", "127.0.0.1:8005"]
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(prometheus_config(targets, 1.0)))
    result = promtool("check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _mutated_run(tmp_path: Path, mutate: Any) -> str:
    """Run the unit tests against a copy of the rules whose every alert is ``mutate``d."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES / "recording.yml", tmp_path / "rules" / "recording.yml")
    alerts = load(RULES / "alerts.yml")
    for group in alerts["groups"]:
        for rule in group["rules"]:
            mutate(rule)
    (tmp_path / "rules" / "alerts.yml").write_text(yaml.safe_dump(alerts))
    for test_file in UNIT_TESTS:
        shutil.copy(test_file, tmp_path / "tests" / test_file.name)
    result = promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert result.returncode != 0, "the unit tests passed against broken alerts"
    return result.stdout + result.stderr


@needs_promtool
def test_the_unit_tests_catch_every_alert_that_never_fires(tmp_path: Path) -> None:
    def never(rule: dict[str, Any]) -> None:
        rule["expr"] = "vector(1) == 0"

    output = _mutated_run(tmp_path, never)
    for rule in alert_rules():
        assert f"alertname: {rule['alert']}," in output, f"nothing checks {rule['alert']} fires"


@needs_promtool
def test_the_unit_tests_catch_every_alert_that_always_fires(tmp_path: Path) -> None:
    """An alert that fires on everything must fail a case where that alert must stay quiet
    (a failure whose expectation is empty)."""

    def always(rule: dict[str, Any]) -> None:
        rule["expr"] = "vector(1)"
        rule.pop("for", None)

    output = _mutated_run(tmp_path, always)
    quiet_failures = {
        block.split(",", 1)[0].strip()
        for block in output.split("alertname: ")[1:]
        if "exp:[]" in block.split("got:", 1)[0].replace(" ", "").replace("\n", "")
    }
    for rule in alert_rules():
        assert rule["alert"] in quiet_failures, f"nothing checks {rule['alert']} stays quiet"


# ---- structure (no promtool needed) -----------------------------------------------------


def test_every_alert_has_a_severity_summary_and_description() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["alert"].startswith("ChatPic"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 40, rule["alert"]


def test_required_alerts_exist() -> None:
    assert {
        "ChatPicOldestPendingImage",
        "ChatPicConsumerLagGrowing",
        "ChatPicDeadLetters",
        "ChatPicHigh5xxRatio",
        "ChatPicScannerDown",
        "ChatPicBankEnforcementSlow",
        "ChatPicReviewQueueOverSLA",
        "ChatPicDependencyDown",
    } <= {r["alert"] for r in alert_rules()}


def test_every_review_queue_has_an_sla() -> None:
    from services.review.rooms import QUEUE as ROOMS_QUEUE
    from services.shared.jobrepo import QUEUES

    slas = {
        r["labels"]["queue"]: r["expr"]
        for g in load(RULES / "recording.yml")["groups"]
        for r in g["rules"]
        if r.get("record") == "queue:chatpic_review_sla_seconds"
    }
    assert set(slas) == {*QUEUES, ROOMS_QUEUE}
    assert all(expr.startswith("vector(") for expr in slas.values())


def test_production_jobs_are_the_services_on_their_default_ports() -> None:
    config = load(PROM_DIR / "prometheus.yml")
    assert config["rule_files"] == ["rules/recording.yml", "rules/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    ports = StackPorts()
    for name in SERVICES:
        job = jobs[name]
        if "static_configs" in job:
            assert job["static_configs"] == [{"targets": [f"{name}:{getattr(ports, name)}"]}]
        else:  # the scanner's replicas, by DNS
            (sd,) = job["dns_sd_configs"]
            assert sd["names"] == [name] and sd["port"] == getattr(ports, name)
