"""`make run`'s entry point as a person uses it: it starts, prints the URL, and Ctrl-C stops
every child; a taken port is named in a clear message. Prometheus is one of the children when
it is installed (`make prometheus`); otherwise the banner says how to get it."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from deploy.local.stack import ROOT, StackPorts, find_prometheus

PROMETHEUS = find_prometheus(os.environ)
# broker, database, ingest, links, review, rooms, scanner (+ prometheus)
CHILDREN = 8 if PROMETHEUS else 7


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stack_env(ports: StackPorts, var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPIC_")}
    env["CHATPIC_VAR_DIR"] = str(var_dir)
    env["CHATPIC_SCANNERS"] = "1"
    if "CHATPIC_PROMETHEUS_BIN" in os.environ:  # the same Prometheus (or none) as PROMETHEUS
        env["CHATPIC_PROMETHEUS_BIN"] = os.environ["CHATPIC_PROMETHEUS_BIN"]
    for name in ports.__dataclass_fields__:
        env[f"CHATPIC_{name.upper()}_PORT"] = str(getattr(ports, name))
    return env


def test_run_prints_the_url_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = StackPorts.free()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.stack"],
        cwd=ROOT,
        env=stack_env(ports, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(line) for line in proc.stdout],
            daemon=True,
        )
        reader.start()
        output = ""
        deadline = time.monotonic() + 120
        while "Press Ctrl-C" not in output and time.monotonic() < deadline:
            try:
                output += lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None:
                    break
        assert f"http://127.0.0.1:{ports.ingest}/" in output, output
        page = httpx.get(f"http://127.0.0.1:{ports.ingest}/", timeout=10)
        assert page.status_code == 200 and "<form" in page.text
        kids = children_of(proc.pid)
        assert len(kids) == CHILDREN
        assert f"http://127.0.0.1:{ports.rooms}/rooms" in output, output
        if PROMETHEUS:
            prometheus = f"http://127.0.0.1:{ports.prometheus}"
            assert f"Prometheus:      {prometheus}/" in output, output
            assert httpx.get(f"{prometheus}/-/ready", timeout=10).status_code == 200
            config = (tmp_path / "prometheus.yml").read_text()
            assert f"127.0.0.1:{ports.scanner}" in config and "alerts.yml" in config
        else:
            assert "Prometheus:      not " in output, output  # ... and how to get it
        rooms = httpx.get(f"http://127.0.0.1:{ports.rooms}/rooms", timeout=10)
        assert rooms.status_code == 200 and "Start a room" in rooms.text

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        reader.join(10)
        rest = "".join(lines.get() for _ in range(lines.qsize()))
        assert "Stopped." in rest
        deadline = time.monotonic() + 10
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [k for k in kids if alive(k)] == []
        assert (tmp_path / "logs" / "scanner.log").exists()
        if PROMETHEUS:
            assert (tmp_path / "prometheus").is_dir()  # its storage, under the var dir
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    ports = StackPorts.free()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports.broker))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "deploy.local.stack"],
            cwd=ROOT,
            env=stack_env(ports, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"broker ({ports.broker})" in result.stderr and "already in use" in result.stderr


@pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed (make prometheus)")
def test_a_taken_prometheus_port_is_named(tmp_path: Path) -> None:
    ports = StackPorts.free()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports.prometheus))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "deploy.local.stack"],
            cwd=ROOT,
            env=stack_env(ports, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"prometheus ({ports.prometheus})" in result.stderr, result.stderr
    assert "CHATPIC_<NAME>_PORT" in result.stderr


def test_a_scanner_port_that_is_another_service_port_is_named(tmp_path: Path) -> None:
    ports = StackPorts.free()
    env = stack_env(ports, tmp_path)
    env["CHATPIC_SCANNERS"] = "3"
    env["CHATPIC_ROOMS_PORT"] = str(ports.scanner + 2)  # scanner-2's metrics port
    result = subprocess.run(
        [sys.executable, "-m", "deploy.local.stack"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"rooms and scanner-2 ({ports.scanner + 2})" in result.stderr


def test_a_bad_port_setting_is_refused(tmp_path: Path) -> None:
    env = stack_env(StackPorts.free(), tmp_path)
    env["CHATPIC_MONGO_PORT"] = "seventy"
    result = subprocess.run(
        [sys.executable, "-m", "deploy.local.stack"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "CHATPIC_MONGO_PORT" in result.stderr


def test_children_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    """A closed terminal or kill -9 of `make run` must not leave the broker or services behind."""
    ports = StackPorts.free()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.stack"],
        cwd=ROOT,
        env=stack_env(ports, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # Prometheus, when installed, is the last child started.
        last = f"{ports.prometheus}/-/ready" if PROMETHEUS else f"{ports.scanner}/readyz"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{last}", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        kids = children_of(proc.pid)
        assert len(kids) == CHILDREN
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 20
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [k for k in kids if alive(k)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
