"""How the local stack finds, configures and announces Prometheus (no servers started)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from deploy.local.stack import (
    RULES_DIR,
    Stack,
    StackError,
    StackPorts,
    find_prometheus,
    prometheus_config,
    prometheus_line,
)


def fake_binary(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_free_ports_include_a_distinct_prometheus_port() -> None:
    ports = StackPorts.free()
    numbers = [getattr(ports, n) for n in ports.__dataclass_fields__]
    assert len(set(numbers)) == len(numbers)
    assert len(numbers) == 8 and ports.prometheus > 0
    assert StackPorts().prometheus == 9090
    assert StackPorts.from_env({"CHATPIC_PROMETHEUS_PORT": "19990"}).prometheus == 19990
    with pytest.raises(StackError, match="CHATPIC_PROMETHEUS_PORT"):
        StackPorts.from_env({"CHATPIC_PROMETHEUS_PORT": "nine"})


def test_find_prometheus_prefers_the_setting_then_path(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path / "prometheus")
    assert find_prometheus({"CHATPIC_PROMETHEUS_BIN": str(binary), "PATH": ""}) == str(binary)
    assert find_prometheus({"CHATPIC_PROMETHEUS_BIN": str(tmp_path / "nope")}) is None
    assert find_prometheus({"CHATPIC_PROMETHEUS_BIN": ""}) is None  # empty: switched off
    assert find_prometheus({"PATH": str(tmp_path)}) == str(binary)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "prometheus").write_text("not executable")
    found = find_prometheus({"PATH": str(tmp_path / "plain")})
    assert found != str(tmp_path / "plain" / "prometheus")  # only an executable counts


def test_the_run_banner_says_where_prometheus_is_or_how_to_get_it(tmp_path: Path) -> None:
    ports = StackPorts.free()
    running = Stack(var_dir=tmp_path, ports=ports, prometheus_bin="/usr/bin/prometheus")
    line = prometheus_line(running, {})
    assert f"http://127.0.0.1:{ports.prometheus}/" in line and "/alerts" in line
    absent = Stack(var_dir=tmp_path, ports=ports)
    assert "make prometheus" in prometheus_line(absent, {})
    assert "off" in prometheus_line(absent, {"CHATPIC_PROMETHEUS_BIN": ""})
    assert "/opt/x is not an executable" in prometheus_line(
        absent, {"CHATPIC_PROMETHEUS_BIN": "/opt/x"}
    )


def test_the_prometheus_port_is_checked_only_when_prometheus_starts(tmp_path: Path) -> None:
    ports = StackPorts.free()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports.prometheus))
        blocker.listen()
        Stack(var_dir=tmp_path, ports=ports).check_ports()  # no Prometheus: not our business
        with_prometheus = Stack(var_dir=tmp_path, ports=ports, prometheus_bin="/bin/true")
        with pytest.raises(StackError, match=rf"prometheus \({ports.prometheus}\)"):
            with_prometheus.check_ports()
        with pytest.raises(StackError, match="CHATPIC_PROMETHEUS_PORT"):
            with_prometheus.start_prometheus("/bin/true")
    assert "prometheus" not in with_prometheus.procs


def test_local_config_scrapes_every_service_and_loads_the_production_rules() -> None:
    targets = {
        "ingest": ["127.0.0.1:8001"],
        "scanner": ["127.0.0.1:8004", "127.0.0.1:8005"],
    }
    config = prometheus_config(targets, 1.5)
    assert config["global"]["scrape_interval"] == "1500ms"
    assert config["global"]["scrape_timeout"] == "1500ms"  # never longer than the interval
    assert prometheus_config(targets, 5)["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == [
        str(RULES_DIR / "recording.yml"),
        str(RULES_DIR / "alerts.yml"),
    ]
    assert all(Path(f).is_file() for f in config["rule_files"])
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == targets


def test_scrape_targets_follow_the_running_scanner_processes(tmp_path: Path) -> None:
    class Proc:
        def __init__(self, code: int | None) -> None:
            self.code = code

        def poll(self) -> int | None:
            return self.code

    ports = StackPorts.free()
    stack = Stack(var_dir=tmp_path, ports=ports, scanners=3)
    stack.scanner_ports = {0: 18004, 1: 18005, 2: 18006}
    procs: dict[str, Any] = {"scanner": Proc(None), "scanner-1": Proc(0), "scanner-2": Proc(None)}
    stack.procs = procs
    targets = stack.scrape_targets()
    assert targets["scanner"] == ["127.0.0.1:18004", "127.0.0.1:18006"]
    assert targets["rooms"] == [f"127.0.0.1:{ports.rooms}"]
    assert set(targets) == {"ingest", "links", "review", "rooms", "scanner"}
