"""Deployment files agree with the code: the Dockerfile, .dockerignore, deploy/compose.yaml and
its init scripts, and the Prometheus/Grafana files compose mounts.

Docker is not available here, so the files are checked by construction: each checker returns
the problems it finds, the real files must have none, and ``test_*_mutations`` show that each
check fires on a broken copy. deploy/k8s is checked in test_deploy_k8s.py.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from deploy.local.stack import StackPorts
from services.ingest.settings import IngestSettings
from services.links.settings import LinksSettings
from services.review.settings import ReviewSettings
from services.rooms.settings import RoomsSettings
from services.scanner.settings import ScannerSettings
from services.shared.events import TOPICS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
TOPIC_SCRIPT = DEPLOY / "compose" / "create-topics.sh"
MONGO_SCRIPT = DEPLOY / "compose" / "mongo-init-replica.js"

SERVICE_NAMES = ("ingest", "links", "review", "rooms", "scanner")
HTTP_SERVICES = ("ingest", "links", "review", "rooms")
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "links": LinksSettings,
    "review": ReviewSettings,
    "rooms": RoomsSettings,
    "scanner": ScannerSettings,
}
# The contract's ports (HTTP port, or the scanner's metrics port), one per service.
PORTS = {"ingest": 8001, "links": 8002, "review": 8003, "rooms": 8100, "scanner": 8004}
HEALTH_PATHS = ("/healthz", "/readyz")

Doc = dict[str, Any]
Mutation = Callable[[Any], None]


# ---- shared helpers (test_deploy_k8s.py imports these) ------------------------------------
def setting_env_names(service: str) -> set[str]:
    """The environment variables a service reads: CHATPIC_ + field name upper-cased."""
    return {f"CHATPIC_{name.upper()}" for name in SETTINGS[service].model_fields}


def port_env(service: str) -> str:
    return "CHATPIC_METRICS_PORT" if service == "scanner" else "CHATPIC_PORT"


def host_env(service: str) -> str:
    return "CHATPIC_METRICS_HOST" if service == "scanner" else "CHATPIC_HOST"


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def load_compose() -> Doc:
    (doc,) = load_yaml_docs(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolated_names(text: str) -> dict[str, str]:
    """Variables compose interpolates in ``text``: name -> operator ('', '-', ':-', '?', ':?')."""
    return {m["name"]: m["op"] or "" for m in _INTERPOLATION.finditer(text)}


def resolve(value: object) -> str:
    """A compose value as it is with no .env: defaults applied, required ones as <NAME>."""

    def one(m: re.Match[str]) -> str:
        op = m["op"] or ""
        if op.endswith("-"):
            return m["arg"]
        if op.endswith("?"):
            return f"<{m['name']}>"
        return ""

    return _INTERPOLATION.sub(one, str(value))


def compose_env(service: Doc) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def chatpic_image(compose: Doc) -> str:
    return resolve(compose["services"]["ingest"]["image"])


# ---- Dockerfile ----------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m[1], m[0]), text)


def dockerfile_stages(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(base image, instructions)] per stage, ARGs expanded with their defaults."""
    global_args: dict[str, str] = {}
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    stage_args: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions(text):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            (stage_args if stages else global_args)[name.strip()] = default.strip().strip('"')
            continue
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            stages.append((_expand(words[0], global_args), []))
            stage_args = {}
            continue
        if stages:
            stages[-1][1].append((keyword, _expand(rest, {**global_args, **stage_args})))
    return stages


def dockerfile_user_uid(text: str) -> int | None:
    stages = dockerfile_stages(text)
    users = [rest for keyword, rest in stages[-1][1] if keyword == "USER"] if stages else []
    if not users:
        return None
    user = users[-1].split(":")[0]
    return int(user) if user.isdigit() else None


def dockerfile_problems(text: str) -> list[str]:
    problems: list[str] = []
    stages = dockerfile_stages(text)
    if len(stages) < 2:
        return [f"not multi-stage: {len(stages)} FROM"]
    for base, _ in stages:
        if not base.startswith("python:3.11-slim"):
            problems.append(f"base image {base} is not python:3.11-slim")
    final = stages[-1][1]
    if not any(k == "COPY" and "--from=" in r for k, r in final):
        problems.append("the final stage copies nothing from the builder stage")
    for keyword, rest in final:
        if keyword == "RUN" and re.search(r"apt-get install|build-essential|\bgcc\b", rest):
            problems.append(f"build tools installed in the final stage: {rest[:60]}")
        if keyword == "RUN" and re.search(r"pip3? install", rest):
            problems.append(f"pip install in the final stage: {rest[:60]}")
    for _, instructions in stages:
        for keyword, rest in instructions:
            pip = keyword == "RUN" and re.search(r"pip3? install", rest)
            if pip and "--no-cache-dir" not in rest:
                problems.append(f"pip install without --no-cache-dir: {rest[:60]}")
    uid = dockerfile_user_uid(text)
    if uid is None or uid == 0:
        problems.append(f"the final stage's USER is not a fixed non-root UID ({uid})")
    user_at = [i for i, (k, _) in enumerate(final) if k == "USER"]
    model_check = [
        i for i, (k, r) in enumerate(final) if k == "RUN" and "NsfwModel(default_card())" in r
    ]
    if not model_check or not user_at or model_check[-1] < user_at[-1]:
        problems.append("the final stage does not load the baked-in model as the service user")
    exposed = {int(p.split("/")[0]) for k, r in final if k == "EXPOSE" for p in r.split()}
    if exposed != set(PORTS.values()):
        problems.append(
            f"EXPOSE {sorted(exposed)} is not the services' ports {sorted(PORTS.values())}"
        )
    cmds = [r for k, r in final if k == "CMD"]
    modules = {f'["python", "-m", "services.{n}"]' for n in SERVICE_NAMES}
    if not cmds or cmds[-1] not in modules:
        problems.append(f"CMD {cmds[-1:]} does not run a service module")
    copied = [r.split()[0] for k, r in final if k == "COPY" and "--from=" not in r]
    if copied != ["services/"]:
        problems.append(f"the final stage copies {copied} from the context, not only services/")
    return problems


def dockerignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching ``path`` (or one of its parents) decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, p) for p in prefixes):
            excluded = not negate
    return excluded


MUST_BE_IN_CONTEXT = ("pyproject.toml", "services/ingest/app.py", "services/scanner/model.py")
MUST_STAY_OUT = (
    ".git/HEAD",
    ".venv/bin/python",
    "var/secret_salt",
    "var/review_admin_password",
    "tests/unit/test_deploy.py",
    ".pytest_cache/v/cache",
    "deploy/.env",
    "services/ingest/__pycache__/app.cpython-311.pyc",
    ".ruff_cache/content",
)


def dockerignore_problems(text: str) -> list[str]:
    patterns = dockerignore_patterns(text)
    problems = [
        f"left out of the build context: {p}"
        for p in MUST_BE_IN_CONTEXT
        if dockerignore_excludes(patterns, p)
    ]
    problems += [
        f"sent to the build context: {p}"
        for p in MUST_STAY_OUT
        if not dockerignore_excludes(patterns, p)
    ]
    return problems


# ---- compose -------------------------------------------------------------------------------
def _published_container_ports(service: Doc) -> list[tuple[str, int]]:
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("host_ip", "0.0.0.0")), int(entry["target"])))
            continue
        parts = resolve(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((host_ip, int(parts[-1].split("/")[0])))
    return out


def _healthcheck_url(service: Doc) -> tuple[int, str] | None:
    test = (service.get("healthcheck") or {}).get("test")
    if not test:
        return None
    text = " ".join(test) if isinstance(test, list) else str(test)
    m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[a-z]+)", text)
    return (int(m[1]), m[2]) if m else None


def compose_service_problems(compose: Doc) -> list[str]:
    problems: list[str] = []
    services = compose.get("services") or {}
    images = {resolve(services[n].get("image")) for n in SERVICE_NAMES if n in services}
    if len(images) != 1:
        problems.append(f"the services run different images: {sorted(images)}")
    for name in SERVICE_NAMES:
        svc = services.get(name)
        if svc is None:
            problems.append(f"{name}: not in compose")
            continue
        if svc.get("command") != ["python", "-m", f"services.{name}"]:
            problems.append(
                f"{name}: command {svc.get('command')} is not python -m services.{name}"
            )
        env = compose_env(svc)
        unknown = {k for k in env if k.startswith("CHATPIC_")} - setting_env_names(name)
        if unknown:
            problems.append(
                f"{name}: {sorted(unknown)} are no settings of {SETTINGS[name].__name__}"
            )
        if env.get("CHATPIC_PROFILE") != "production":
            problems.append(f"{name}: CHATPIC_PROFILE is not production")
        if (
            interpolated_names(env.get("CHATPIC_SECRET_SALT", "")).get("CHATPIC_SECRET_SALT")
            != ":?"
        ):
            problems.append(f"{name}: CHATPIC_SECRET_SALT is not a required ${{...:?}} variable")
        port = PORTS[name]
        if env.get(port_env(name)) != str(port):
            problems.append(f"{name}: {port_env(name)}={env.get(port_env(name))}, not {port}")
        if env.get(host_env(name)) != "0.0.0.0":
            problems.append(f"{name}: {host_env(name)} must be 0.0.0.0 in a container")
        health = _healthcheck_url(svc)
        if health is None or health[0] != port or health[1] not in HEALTH_PATHS:
            problems.append(
                f"{name}: healthcheck {health} does not probe :{port}/readyz or /healthz"
            )
        for host_ip, target in _published_container_ports(svc):
            if target != port:
                problems.append(f"{name}: publishes container port {target}, it listens on {port}")
            if name == "review" and host_ip != "127.0.0.1":
                problems.append(f"review: published on {host_ip}, not loopback only")
        if name in HTTP_SERVICES and not _published_container_ports(svc):
            problems.append(f"{name}: its port is not published")
        depends = svc.get("depends_on") or {}
        for job in ("kafka-topics", "mongo-init"):
            condition = depends.get(job, {}).get("condition") if isinstance(depends, dict) else None
            if condition != "service_completed_successfully":
                problems.append(f"{name}: does not wait for {job} to complete ({condition})")
    return problems


def topic_job_env(compose: Doc) -> dict[str, str]:
    return {k: resolve(v) for k, v in compose_env(compose["services"]["kafka-topics"]).items()}


def compose_scanner_problems(compose: Doc) -> list[str]:
    problems: list[str] = []
    scanner = compose["services"]["scanner"]
    replicas = (scanner.get("deploy") or {}).get("replicas", 1)
    partitions = int(topic_job_env(compose).get("PARTITIONS", "0"))
    if not isinstance(replicas, int) or not 1 < replicas <= partitions:
        problems.append(f"scanner replicas {replicas} not in 2..{partitions} (partitions)")
    if "container_name" in scanner:
        problems.append("scanner has a container_name: replicas would clash")
    if scanner.get("ports"):
        problems.append("scanner publishes ports: replicas would clash")
    return problems


def _listeners(value: str) -> dict[str, int]:
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        out[name.strip()] = int(address.rsplit(":", 1)[1])
    return out


def compose_kafka_problems(compose: Doc) -> list[str]:
    problems: list[str] = []
    services = compose["services"]
    kafka = services["kafka"]
    env = {k: resolve(v) for k, v in compose_env(kafka).items()}
    roles = set(env.get("KAFKA_PROCESS_ROLES", "").split(","))
    if roles != {"broker", "controller"}:
        problems.append(f"kafka roles {roles}: a single KRaft node must be broker and controller")
    listeners = _listeners(env["KAFKA_LISTENERS"])
    controllers = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")
    protocols = dict(
        p.split(":") for p in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",")
    )
    for name in listeners:
        if name not in protocols:
            problems.append(f"kafka listener {name} has no security protocol")
    for voter in env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(","):
        node, _, address = voter.partition("@")
        host, _, port = address.rpartition(":")
        if node != str(env.get("KAFKA_NODE_ID")) or host != "kafka":
            problems.append(f"quorum voter {voter} is not node {env.get('KAFKA_NODE_ID')}@kafka")
        if not port.isdigit() or int(port) not in {listeners.get(c) for c in controllers}:
            problems.append(f"quorum voter {voter} is not on the controller listener")
    advertised = _listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    if set(advertised) & set(controllers):
        problems.append("kafka advertises its controller listener to clients")
    addresses = {
        f"{item.partition('://')[2]}"
        for item in env.get("KAFKA_ADVERTISED_LISTENERS", "").split(",")
    }
    for listener, listener_port in advertised.items():
        if listeners.get(listener) != listener_port:
            problems.append(
                f"kafka advertises {listener} on {listener_port}, it listens on "
                f"{listeners.get(listener)}"
            )
    users = [n for n in (*SERVICE_NAMES, "kafka-topics") if n in services]
    for name in users:
        bootstrap = compose_env(services[name]).get("CHATPIC_KAFKA_BOOTSTRAP")
        if bootstrap not in addresses:
            problems.append(
                f"{name}: CHATPIC_KAFKA_BOOTSTRAP {bootstrap} is not advertised ({addresses})"
            )
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        if env.get(key) != "1":
            problems.append(f"{key}={env.get(key)} on a single broker")
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", env.get("CLUSTER_ID", "")):
        problems.append("CLUSTER_ID is not a base64 UUID (22 characters)")
    if env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") != "false":
        problems.append("kafka auto-creates topics (a typo would make a 1-partition topic)")
    return problems


def compose_init_problems(compose: Doc) -> list[str]:
    """The init jobs run once after their server is healthy; the servers have healthchecks."""
    problems: list[str] = []
    services = compose["services"]
    for job, server in (("kafka-topics", "kafka"), ("mongo-init", "mongo")):
        if not (services[server].get("healthcheck") or {}).get("test"):
            problems.append(f"{server} has no healthcheck")
        condition = (services[job].get("depends_on") or {}).get(server, {}).get("condition")
        if condition != "service_healthy":
            problems.append(f"{job} does not wait for {server} to be healthy ({condition})")
        if services[job].get("restart", "no") != "no":
            problems.append(f"{job} restarts: a one-shot job must not")
    return problems


def compose_mongo_problems(compose: Doc, script: str) -> list[str]:
    problems: list[str] = []
    services = compose["services"]
    command = services["mongo"].get("command") or []
    replset = command[command.index("--replSet") + 1] if "--replSet" in command else None
    m_set = re.search(r'replicaSet = "([^"]+)"', script)
    m_member = re.search(r'member = "([^"]+)"', script)
    if replset is None or m_set is None or m_set[1] != replset:
        problems.append(f"mongod --replSet {replset} and the init script's set differ")
    if m_member is None or m_member[1] != "mongo:27017":
        problems.append("the replica set member is not the compose service mongo:27017")
    if "rs.initiate" not in script or "NotYetInitialized" not in script:
        problems.append("the init script does not initiate idempotently")
    init = services["mongo-init"]
    mounts = {v.split(":")[1] for v in init.get("volumes") or []}
    if not set(init.get("command") or []) & mounts:
        problems.append("mongo-init runs a script it does not mount")
    for name in SERVICE_NAMES:
        uri = urlsplit(compose_env(services[name]).get("CHATPIC_MONGO_URI", ""))
        if parse_qs(uri.query).get("replicaSet") != [replset] or uri.netloc != "mongo:27017":
            problems.append(f"{name}: CHATPIC_MONGO_URI is not the replica set {replset} at mongo")
    return problems


def compose_mount_problems(compose: Doc) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith(".") and not (DEPLOY / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
    build = compose["services"]["ingest"].get("build") or {}
    dockerfile = DEPLOY / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    if not dockerfile.is_file():
        problems.append(f"the build's Dockerfile {dockerfile} does not exist")
    return problems


def env_example_problems(compose_text: str, example: str) -> list[str]:
    """Every variable compose reads is in .env.example; required ones are there, empty."""
    problems = []
    assigned = dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", example, flags=re.MULTILINE))
    active = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    for name, op in interpolated_names(compose_text).items():
        if name not in assigned:
            problems.append(f"{name} is read by compose but not in .env.example")
        elif op.endswith("?") and (name not in active or assigned[name].strip()):
            problems.append(f"{name} is required: list it in .env.example, uncommented and empty")
    return problems


# ---- the tests -------------------------------------------------------------------------------
def all_deploy_data_files() -> list[Path]:
    return sorted(
        p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
    )


@pytest.mark.parametrize("path", all_deploy_data_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_deploy_file_parses(path: Path) -> None:
    import json

    if path.suffix == ".json":
        assert json.loads(path.read_text())
    else:
        assert load_yaml_docs(path), f"{path} holds no document"


def test_the_contract_ports_are_the_settings_defaults() -> None:
    for name, port in PORTS.items():
        field = "metrics_port" if name == "scanner" else "port"
        assert SETTINGS[name].model_fields[field].default == port, name
        assert getattr(StackPorts(), name) == port, name


def test_image_tag_is_the_project_version() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chatpic_image(load_compose()) == f"chatpic:{version}"
    stages = dockerfile_stages((ROOT / "Dockerfile").read_text())
    labels = " ".join(rest for keyword, rest in stages[-1][1] if keyword == "LABEL")
    assert f'org.opencontainers.image.version="{version}"' in labels
    # The code is copied, not installed: chatpic_build_info reads the version from here.
    env = " ".join(rest for keyword, rest in stages[-1][1] if keyword == "ENV")
    assert f"CHATPIC_BUILD_VERSION={version}" in env.split()
    assert "CHATPIC_BUILD_VERSION" in setting_env_names("scanner")


def test_dockerfile() -> None:
    assert dockerfile_problems((ROOT / "Dockerfile").read_text()) == []


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    assert dockerignore_problems((ROOT / ".dockerignore").read_text()) == []


def test_compose_services() -> None:
    assert compose_service_problems(load_compose()) == []


def test_compose_scanner_runs_several_replicas() -> None:
    assert compose_scanner_problems(load_compose()) == []


def test_compose_kafka_is_a_consistent_kraft_node() -> None:
    assert compose_kafka_problems(load_compose()) == []


def test_compose_init_jobs_run_after_healthy_servers() -> None:
    assert compose_init_problems(load_compose()) == []


def test_compose_mongo_replica_set_is_consistent() -> None:
    assert compose_mongo_problems(load_compose(), MONGO_SCRIPT.read_text()) == []


def test_compose_mounts_and_build_exist() -> None:
    assert compose_mount_problems(load_compose()) == []


def test_env_example_lists_every_variable_and_commits_no_secret() -> None:
    example = DEPLOY / ".env.example"
    assert env_example_problems(COMPOSE_FILE.read_text(), example.read_text()) == []


def run_topic_script(script: str, env: dict[str, str], tmp_path: Path) -> list[list[str]]:
    """Run a topic-creation script with a kafka-topics.sh stand-in that records its calls."""
    calls = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\n')
    stub.chmod(0o755)
    run_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **env,
        "KAFKA_TOPICS_BIN": str(stub),
    }
    subprocess.run(["sh", "-c", script], env=run_env, check=True, capture_output=True, timeout=30)
    return [line.split() for line in calls.read_text().splitlines()]


def created_topics(calls: list[list[str]]) -> dict[str, dict[str, str]]:
    """topic -> its --partitions / --replication-factor / --if-not-exists / bootstrap."""
    out = {}
    for call in calls:
        if "--create" not in call:
            continue
        flags = {call[i]: call[i + 1] for i in range(len(call) - 1) if call[i].startswith("--")}
        out[flags["--topic"]] = {
            "partitions": flags.get("--partitions", ""),
            "replication": flags.get("--replication-factor", ""),
            "if_not_exists": str("--if-not-exists" in call),
            "bootstrap": flags.get("--bootstrap-server", ""),
        }
    return out


def test_topic_script_creates_every_registry_topic_with_the_prefix(tmp_path: Path) -> None:
    compose = load_compose()
    env = topic_job_env(compose)
    prefix = env["CHATPIC_TOPIC_PREFIX"]
    assert prefix == compose_env(compose["services"]["scanner"])["CHATPIC_TOPIC_PREFIX"]
    topics = created_topics(run_topic_script(TOPIC_SCRIPT.read_text(), env, tmp_path))
    assert set(topics) == {f"{prefix}{t}" for t in TOPICS}
    for name, flags in topics.items():
        assert flags == {
            "partitions": env["PARTITIONS"],
            "replication": env["REPLICATION_FACTOR"],
            "if_not_exists": "True",
            "bootstrap": "kafka:9092",
        }, name


def test_topic_script_refuses_to_run_without_its_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in topic_job_env(load_compose()).items() if k != "TOPICS"}
    with pytest.raises(subprocess.CalledProcessError):
        run_topic_script(TOPIC_SCRIPT.read_text(), env, tmp_path)


def prometheus_alignment_problems(compose: Doc, config: Doc) -> list[str]:
    problems = []
    jobs = {job["job_name"]: job for job in config.get("scrape_configs") or []}
    for name in SERVICE_NAMES:
        job = jobs.get(name)
        if job is None:
            problems.append(f"prometheus has no job {name}")
            continue
        if name not in compose["services"]:
            problems.append(f"prometheus job {name} has no compose service")
        static = {t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []}
        dns = {
            f"{n}:{sd.get('port')}" for sd in job.get("dns_sd_configs") or [] for n in sd["names"]
        }
        if f"{name}:{PORTS[name]}" not in static | dns:
            problems.append(
                f"prometheus job {name} scrapes {sorted(static | dns)}, not {name}:{PORTS[name]}"
            )
    return problems


def _mount_target(service: Doc, source: str) -> str | None:
    for volume in service.get("volumes") or []:
        parts = str(volume).split(":")
        if parts[0].rstrip("/") == source:
            return parts[1]
    return None


def test_compose_prometheus_mounts_and_scrapes_what_compose_runs() -> None:
    compose = load_compose()
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    (config,) = load_yaml_docs(config_path)
    assert prometheus_alignment_problems(compose, config) == []
    prometheus = compose["services"]["prometheus"]
    target = _mount_target(prometheus, "./prometheus")
    assert target is not None
    assert f"--config.file={target}/prometheus.yml" in prometheus["command"]
    for rule_file in config.get("rule_files") or []:
        assert list((DEPLOY / "prometheus").glob(rule_file)), rule_file


def test_compose_grafana_provisioning_points_at_the_mounts() -> None:
    compose = load_compose()
    grafana = compose["services"]["grafana"]
    dashboards_at = _mount_target(grafana, "./grafana/dashboards")
    assert _mount_target(grafana, "./grafana/provisioning") == "/etc/grafana/provisioning"
    assert dashboards_at is not None
    providers = sorted((DEPLOY / "grafana/provisioning/dashboards").glob("*.y*ml"))
    sources = sorted((DEPLOY / "grafana/provisioning/datasources").glob("*.y*ml"))
    if not providers and not sources:
        pytest.skip("deploy/grafana/provisioning is not written yet")
    for path in providers:
        for doc in load_yaml_docs(path):
            for provider in doc.get("providers") or []:
                assert provider["options"]["path"].startswith(dashboards_at), path
    prometheus_url = "http://prometheus:9090"
    for path in sources:
        for doc in load_yaml_docs(path):
            for source in doc.get("datasources") or []:
                if source.get("type") == "prometheus":
                    assert source["url"].rstrip("/") == prometheus_url, path


# ---- the checks can fail -----------------------------------------------------------------------
def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: Any) -> None:
        *parents, last = path.split("/")
        for key in parents:
            doc = doc[key]
        doc[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: Any) -> None:
        *parents, last = path.split("/")
        for key in parents:
            doc = doc[key]
        del doc[last]

    return mutate


S = "services"
COMPOSE_MUTATIONS: list[tuple[str, Mutation, Callable[[Doc], list[str]], str]] = [
    ("another image", _set(f"{S}/rooms/image", "chatpic:old"), compose_service_problems, "images"),
    (
        "wrong module",
        _set(f"{S}/links/command", ["python", "-m", "services.ingest"]),
        compose_service_problems,
        "command",
    ),
    (
        "unknown setting",
        _set(f"{S}/ingest/environment/CHATPIC_MAX_VIEWS", "3"),
        compose_service_problems,
        "no settings",
    ),
    (
        "scanner reads a public URL",
        _set(f"{S}/scanner/environment/CHATPIC_LINKS_PUBLIC_URL", "x"),
        compose_service_problems,
        "no settings",
    ),
    (
        "local profile",
        _set(f"{S}/review/environment/CHATPIC_PROFILE", "local"),
        compose_service_problems,
        "production",
    ),
    (
        "salt committed",
        _set(f"{S}/links/environment/CHATPIC_SECRET_SALT", "abc"),
        compose_service_problems,
        "SECRET_SALT",
    ),
    (
        "port moved",
        _set(f"{S}/ingest/environment/CHATPIC_PORT", "9001"),
        compose_service_problems,
        "CHATPIC_PORT",
    ),
    (
        "loopback bind",
        _set(f"{S}/rooms/environment/CHATPIC_HOST", "127.0.0.1"),
        compose_service_problems,
        "0.0.0.0",
    ),
    ("no healthcheck", _delete(f"{S}/links/healthcheck"), compose_service_problems, "healthcheck"),
    (
        "healthcheck on another port",
        _set(
            f"{S}/scanner/healthcheck/test",
            ["CMD", "python", "-c", "urlopen('http://127.0.0.1:8001/readyz')"],
        ),
        compose_service_problems,
        "healthcheck",
    ),
    (
        "publishes the wrong port",
        _set(f"{S}/rooms/ports", ["127.0.0.1:8100:8000"]),
        compose_service_problems,
        "container port",
    ),
    (
        "review exposed",
        _set(f"{S}/review/ports", ["0.0.0.0:8003:8003"]),
        compose_service_problems,
        "loopback",
    ),
    (
        "no wait for topics",
        _delete(f"{S}/review/depends_on/kafka-topics"),
        compose_service_problems,
        "kafka-topics",
    ),
    ("one scanner", _set(f"{S}/scanner/deploy/replicas", 1), compose_scanner_problems, "replicas"),
    (
        "more scanners than partitions",
        _set(f"{S}/scanner/deploy/replicas", 7),
        compose_scanner_problems,
        "replicas",
    ),
    (
        "scanner container_name",
        _set(f"{S}/scanner/container_name", "scanner"),
        compose_scanner_problems,
        "container_name",
    ),
    (
        "broker only",
        _set(f"{S}/kafka/environment/KAFKA_PROCESS_ROLES", "broker"),
        compose_kafka_problems,
        "roles",
    ),
    (
        "voter on the client port",
        _set(f"{S}/kafka/environment/KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9092"),
        compose_kafka_problems,
        "controller listener",
    ),
    (
        "bootstrap not advertised",
        _set(f"{S}/links/environment/CHATPIC_KAFKA_BOOTSTRAP", "localhost:9092"),
        compose_kafka_problems,
        "advertised",
    ),
    (
        "topics job does not wait",
        _delete(f"{S}/kafka-topics/depends_on"),
        compose_init_problems,
        "healthy",
    ),
    (
        "no mongo healthcheck",
        _delete(f"{S}/mongo/healthcheck"),
        compose_init_problems,
        "healthcheck",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "checker", "expected"),
    [pytest.param(m, c, e, id=i) for i, m, c, e in COMPOSE_MUTATIONS],
)
def test_compose_mutations(
    mutation: Mutation, checker: Callable[[Doc], list[str]], expected: str
) -> None:
    compose = copy.deepcopy(load_compose())
    assert checker(compose) == []
    mutation(compose)
    problems = checker(compose)
    assert any(expected in p for p in problems), problems


def test_mongo_check_fails_on_a_mismatched_replica_set() -> None:
    compose = load_compose()
    script = MONGO_SCRIPT.read_text()
    assert compose_mongo_problems(compose, script.replace('"rs0"', '"rs1"'))
    broken = copy.deepcopy(compose)
    broken["services"]["ingest"]["environment"]["CHATPIC_MONGO_URI"] = "mongodb://mongo:27017/"
    assert any("ingest" in p for p in compose_mongo_problems(broken, script))


DOCKERFILE_MUTATIONS = [
    (
        "single stage",
        lambda t: t.replace("FROM ${PYTHON_IMAGE} AS builder", "").replace(
            "COPY --from=builder /opt/venv /opt/venv", ""
        ),
        "multi-stage",
    ),
    ("root", lambda t: t.replace("USER ${CHATPIC_UID}:${CHATPIC_UID}", "USER root"), "non-root"),
    ("no USER", lambda t: t.replace("USER ${CHATPIC_UID}:${CHATPIC_UID}", ""), "non-root"),
    (
        "pip in the final stage",
        lambda t: t + "\nRUN pip install --no-cache-dir httpx\n",
        "final stage",
    ),
    (
        "pip keeps its cache",
        lambda t: t.replace("pip install --no-cache-dir -r", "pip install -r"),
        "--no-cache-dir",
    ),
    ("compiler in the final stage", lambda t: t + "\nRUN apt-get install -y gcc\n", "build tools"),
    ("not slim", lambda t: t.replace("python:3.11-slim-bookworm", "python:3.11"), "slim"),
    ("a port missing", lambda t: t.replace("EXPOSE 8001 8002", "EXPOSE 8002"), "EXPOSE"),
    ("no model check", lambda t: t.replace("NsfwModel(default_card())", "None"), "model"),
    (
        "everything copied",
        lambda t: t.replace("COPY services/ /app/services/", "COPY . /app/"),
        "copies",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [pytest.param(m, e, id=i) for i, m, e in DOCKERFILE_MUTATIONS]
)
def test_dockerfile_mutations(mutate: Callable[[str], str], expected: str) -> None:
    text = (ROOT / "Dockerfile").read_text()
    mutated = mutate(text)
    assert mutated != text
    assert any(expected in p for p in dockerfile_problems(mutated)), dockerfile_problems(mutated)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(lambda t: t.replace("\n*\n", "\n"), ".venv", id="no allowlist"),
        pytest.param(
            lambda t: t.replace("!services\n", "!services\n!tests\n"), "tests/", id="tests"
        ),
        pytest.param(
            lambda t: t.replace("**/__pycache__\n", "").replace("**/*.pyc\n", ""),
            "__pycache__",
            id="pycache",
        ),
        pytest.param(lambda t: t.replace("!pyproject.toml\n", ""), "pyproject", id="no pyproject"),
    ],
)
def test_dockerignore_mutations(mutate: Callable[[str], str], expected: str) -> None:
    text = (ROOT / ".dockerignore").read_text()
    mutated = mutate(text)
    assert mutated != text
    assert any(expected in p for p in dockerignore_problems(mutated))


def test_env_example_check_fails_on_a_committed_or_missing_secret() -> None:
    compose_text = COMPOSE_FILE.read_text()
    example = (DEPLOY / ".env.example").read_text()
    filled = example.replace("CHATPIC_SECRET_SALT=\n", "CHATPIC_SECRET_SALT=0123abcd\n")
    assert filled != example and env_example_problems(compose_text, filled)
    dropped = example.replace("GRAFANA_ADMIN_PASSWORD=\n", "")
    assert dropped != example and env_example_problems(compose_text, dropped)


def test_prometheus_alignment_check_fails_on_a_wrong_target() -> None:
    compose = load_compose()
    (config,) = load_yaml_docs(DEPLOY / "prometheus" / "prometheus.yml")
    for job in config["scrape_configs"]:
        if job["job_name"] == "links":
            job["static_configs"] = [{"targets": ["links:9999"]}]
    assert prometheus_alignment_problems(compose, config)
