"""deploy/k8s agrees with the code, with itself and with compose: Deployments run the right
module with probes on the port the service listens on, every variable is a setting of that
service, Services and Ingresses point at what exists, every public route reaches its service
on the one public host (no path claimed twice, /metrics none; the review console on a host of
its own), the HPA and PDBs fit the scanner and the partitions.

As in test_deploy.py, checkers return problems; ``test_k8s_mutations`` shows each one fires.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.ingest.settings import IngestSettings
from services.review import domain as review_domain
from services.shared.events import TOPICS
from tests.unit.test_deploy import (
    DEPLOY,
    HTTP_SERVICES,
    PORTS,
    ROOT,
    SERVICE_NAMES,
    TOPIC_SCRIPT,
    Doc,
    chatpic_image,
    created_topics,
    dockerfile_user_uid,
    host_env,
    load_compose,
    load_yaml_docs,
    port_env,
    run_topic_script,
    setting_env_names,
    topic_job_env,
)

K8S = DEPLOY / "k8s"
NAMESPACE = "chatpic"
SECRET_TEMPLATE = K8S / "secret.template.yaml"
INTERNAL_PATHS = ("/metrics", "/healthz", "/readyz")
CLUSTER_SCOPED = {"Namespace"}
# Ingest, links and rooms share one public host; review has its own.
SHARED_HOST_SERVICES = ("ingest", "links", "rooms")
DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
# Routes a service declares that the shared host gives to another service on purpose (path ->
# the service that gets it there). The service still serves them on its own port.
LEFT_TO_ANOTHER: dict[str, dict[str, str]] = {
    # The same room list as /rooms; / is ingest's upload page.
    "rooms": {"/": "ingest", **dict.fromkeys(DOC_PATHS, "ingest")},
    # DELETE, the old path of DELETE /api/v1/owner/images/{id} (GET of that path is ingest's).
    "links": {"/api/v1/images/x": "ingest", **dict.fromkeys(DOC_PATHS, "ingest")},
}
# An old path left to another service keeps a twin that the shared host routes to its service.
LEGACY_TWINS = {("links", "/api/v1/images/x"): "/api/v1/owner/images/x"}
# WebSockets (one per service that has one) need the long proxy timeouts.
WEBSOCKETS = {"links": "/api/v1/links/x/session", "rooms": "/api/v1/rooms/x/ws"}
SOCKET_TIMEOUT_S = 3600
UPLOAD_PATHS = ("/api/v1/images", "/upload")


# ---- loading --------------------------------------------------------------------------------
def kustomization() -> Doc:
    (doc,) = load_yaml_docs(K8S / "kustomization.yaml")
    assert isinstance(doc, dict)
    return doc


def manifests() -> list[Doc]:
    """Every document kustomize applies, in its resource order."""
    return [doc for name in kustomization()["resources"] for doc in load_yaml_docs(K8S / name)]


def named(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Doc) -> list[Doc]:
    return list(pod_spec(workload).get("containers") or [])


def main_container(deployment: Doc) -> Doc:
    name = deployment["metadata"]["name"]
    for c in containers(deployment):
        if c["name"] == name:
            return c
    return containers(deployment)[0]


def container_port(container: Doc, port: int | str) -> int | None:
    """A probe's or Service's port (number or name) as the container's declared port."""
    declared = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    if isinstance(port, int):
        return port if port in declared.values() else None
    return declared.get(port)


def configmap_data(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {n: dict(d.get("data") or {}) for n, d in named(docs, "ConfigMap").items()}


def secret_data(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {
        n: {**(d.get("stringData") or {}), **(d.get("data") or {})}
        for n, d in named(docs, "Secret").items()
    }


def effective_env(container: Doc, docs: list[Doc]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom first, env overrides)."""
    maps = configmap_data(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(maps.get(source["configMapRef"]["name"], {}))
    for entry in container.get("env") or []:
        env[entry["name"]] = str(entry.get("value", "<from " + str(entry.get("valueFrom")) + ">"))
    return env


def public_hosts(docs: list[Doc]) -> dict[str, str]:
    """Service name -> the host of its CHATPIC_<NAME>_PUBLIC_URL in the ConfigMaps."""
    out: dict[str, str] = {}
    for data in configmap_data(docs).values():
        for name in HTTP_SERVICES:
            url = data.get(f"CHATPIC_{name.upper()}_PUBLIC_URL")
            if url:
                out[name] = urlsplit(url).hostname or ""
    return out


# ---- routes of each service (read from the code) ----------------------------------------
ROUTE_METHODS = {"get", "post", "put", "delete", "patch", "head", "api_route", "websocket"}


@functools.cache
def service_routes(service: str) -> frozenset[str]:
    """One request path per route the service declares (path parameters filled in), from the
    decorators and mounts in services/<service>, plus FastAPI's docs unless the app hides them."""
    paths: set[str] = set()
    folder = ROOT / "services" / service
    for source in folder.rglob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            keywords = {k.arg for k in node.keywords}
            if node.func.attr in ("include_router", "APIRouter") or "prefix" in keywords:
                assert "prefix" not in keywords, f"{source}: route prefixes are not read here"
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            path = re.sub(r"\{[^}]+\}", "x", first.value)
            if node.func.attr in ROUTE_METHODS and path.startswith("/"):
                paths.add(path)
            elif node.func.attr == "mount" and path.startswith("/"):
                static = folder / "static"
                files = sorted(p.name for p in static.iterdir()) if static.is_dir() else ["x"]
                paths.update(f"{path}/{name}" for name in files)
    if "public_docs=False" not in (folder / "app.py").read_text():
        paths.update(DOC_PATHS)
    return frozenset(paths)


def _prefix_match(rule: str, path: str) -> bool:
    rule = rule.rstrip("/")
    return rule == "" or path == rule or path.startswith(rule + "/")


def matching_ingress(ingresses: list[Doc], host: str, path: str) -> tuple[Doc, Doc] | None:
    """(Ingress, path entry) that takes host+path: Exact first, then the longest Prefix."""
    exact: list[tuple[Doc, Doc]] = []
    prefix: list[tuple[int, int, tuple[Doc, Doc]]] = []
    for ingress in ingresses:
        for rule in ingress["spec"].get("rules") or []:
            if rule.get("host") not in (None, host):
                continue
            for p in rule["http"]["paths"]:
                if p["pathType"] == "Exact" and p["path"] == path:
                    exact.append((ingress, p))
                elif p["pathType"] == "Prefix" and _prefix_match(p["path"], path):
                    prefix.append((len(p["path"].rstrip("/")), -len(prefix), (ingress, p)))
    if exact:
        return exact[0]
    return max(prefix, key=lambda m: m[:2])[2] if prefix else None


def route(ingresses: list[Doc], host: str, path: str) -> tuple[str, Any] | None:
    """(service, port) an Ingress sends host+path to: Exact first, then the longest Prefix."""
    match = matching_ingress(ingresses, host, path)
    if match is None:
        return None
    backend = match[1]["backend"]["service"]
    return backend["name"], backend["port"].get("name", backend["port"].get("number"))


def public_routes(service: str) -> frozenset[str]:
    """The routes the shared host must send to ``service``."""
    return service_routes(service) - set(LEFT_TO_ANOTHER.get(service, {}))


def _size_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)", text.strip().lower())
    assert m, text
    return int(m[1]) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m[2]]


# ---- checkers ---------------------------------------------------------------------------------
def layout_problems(docs: list[Doc], kustomize: Doc) -> list[str]:
    problems = []
    listed = set(kustomize.get("resources") or [])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE.name}
    if listed != files:
        problems.append(f"kustomization lists {sorted(listed)}, the folder has {sorted(files)}")
    if SECRET_TEMPLATE.name in listed:
        problems.append("the secret template (placeholders) would be applied")
    if kustomize.get("namespace") != NAMESPACE:
        problems.append("kustomization does not set the namespace")
    for doc in docs:
        name = f"{doc.get('kind')}/{doc['metadata'].get('name')}"
        if doc["kind"] not in CLUSTER_SCOPED and doc["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{name} is not in namespace {NAMESPACE}")
    ns = named(docs, "Namespace").get(NAMESPACE)
    if ns is None:
        problems.append(f"no Namespace {NAMESPACE}")
    elif ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
        problems.append("the namespace does not enforce the restricted Pod Security Standard")
    return problems


def container_hardening_problems(workload: Doc, label: str, uid: int | None) -> list[str]:
    problems = []
    spec = pod_spec(workload)
    pod_sc = spec.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append(f"{label}: runAsNonRoot is not true")
    if uid is not None and pod_sc.get("runAsUser") != uid:
        problems.append(f"{label}: runAsUser {pod_sc.get('runAsUser')} is not the image's {uid}")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{label}: no RuntimeDefault seccomp profile")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{label}: mounts a service account token it does not need")
    if spec.get("enableServiceLinks") is not False:
        problems.append(f"{label}: service links inject <SERVICE>_PORT variables")
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    for c in containers(workload):
        where = f"{label}/{c['name']}"
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(res.get(kind) or {})
            if missing:
                problems.append(f"{where}: no {kind} for {sorted(missing)}")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{where}: capabilities are not all dropped")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: the root filesystem is writable")
        tmp = [m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/tmp"]
        if not tmp or tmp[0]["name"] not in empty_dirs:
            problems.append(f"{where}: /tmp is not an emptyDir (the root filesystem is read-only)")
    return problems


def deployment_problems(docs: list[Doc], image: str, uid: int | None) -> list[str]:
    problems: list[str] = []
    deployments = named(docs, "Deployment")
    for name in SERVICE_NAMES:
        deployment = deployments.get(name)
        if deployment is None:
            problems.append(f"no Deployment {name}")
            continue
        problems += container_hardening_problems(deployment, name, uid)
        c = main_container(deployment)
        if [*c.get("command", []), *c.get("args", [])] != ["python", "-m", f"services.{name}"]:
            problems.append(f"{name}: does not run python -m services.{name}")
        if c.get("image") != image:
            problems.append(f"{name}: image {c.get('image')} is not compose's {image}")
        env = effective_env(c, docs)
        port = PORTS[name]
        if env.get(port_env(name)) != str(port):
            problems.append(f"{name}: {port_env(name)}={env.get(port_env(name))}, not {port}")
        if env.get(host_env(name)) != "0.0.0.0":
            problems.append(f"{name}: {host_env(name)} is not 0.0.0.0")
        if env.get("CHATPIC_PROFILE") != "production":
            problems.append(f"{name}: CHATPIC_PROFILE is not production")
        if container_port(c, port) != port:
            problems.append(f"{name}: declares no containerPort {port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or container_port(c, get.get("port", -1)) != port:
                problems.append(f"{name}: {probe} is not GET {path} on port {port}: {get}")
        template = deployment["spec"]["template"]["metadata"]
        labels, annotations = template.get("labels") or {}, template.get("annotations") or {}
        selector = deployment["spec"]["selector"]["matchLabels"]
        if not selector.items() <= labels.items():
            problems.append(f"{name}: its selector does not match its own pods")
        if labels.get("app.kubernetes.io/name") != name:
            problems.append(f"{name}: pods lack app.kubernetes.io/name={name} (the Prometheus job)")
        if labels.get("app.kubernetes.io/part-of") != "chatpic":
            problems.append(f"{name}: pods lack app.kubernetes.io/part-of=chatpic")
        if annotations.get("prometheus.io/scrape") != "true":
            problems.append(f"{name}: pods are not annotated for scraping")
        if annotations.get("prometheus.io/port") != str(port):
            problems.append(f"{name}: prometheus.io/port is not {port}")
    return problems


def env_problems(docs: list[Doc], secrets: list[Doc]) -> list[str]:
    """Every variable a service gets (env, envFrom ConfigMaps/Secrets) is one of its settings."""
    problems: list[str] = []
    maps, keys = configmap_data(docs), secret_data(secrets)
    for name, deployment in named(docs, "Deployment").items():
        if name not in SERVICE_NAMES:
            continue
        allowed = setting_env_names(name)
        c = main_container(deployment)
        for source in c.get("envFrom") or []:
            ref_kind = "configMapRef" if "configMapRef" in source else "secretRef"
            ref = source[ref_kind]["name"]
            data = (maps if ref_kind == "configMapRef" else keys).get(ref)
            if data is None:
                problems.append(f"{name}: {ref_kind} {ref} does not exist")
                continue
            unknown = set(data) - allowed
            if unknown:
                problems.append(f"{name}: {ref} holds {sorted(unknown)}, no settings of {name}")
        for entry in c.get("env") or []:
            if entry["name"] not in allowed:
                problems.append(f"{name}: env {entry['name']} is no setting of {name}")
            value_from = entry.get("valueFrom") or {}
            for ref_kind, pool in (("secretKeyRef", keys), ("configMapKeyRef", maps)):
                ref = value_from.get(ref_kind)
                if ref and ref["key"] not in pool.get(ref["name"], {}):
                    problems.append(f"{name}: {ref_kind} {ref['name']}/{ref['key']} is missing")
    for secret, data in keys.items():
        for key, value in data.items():
            if "REPLACE_ME" not in str(value):
                problems.append(f"secret template {secret}/{key} holds a value, not a placeholder")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    problems: list[str] = []
    deployments = named(docs, "Deployment")
    for name, service in named(docs, "Service").items():
        selector = service["spec"].get("selector") or {}
        matches = [
            d
            for d in deployments.values()
            if selector
            and selector.items() <= (d["spec"]["template"]["metadata"].get("labels") or {}).items()
        ]
        if len(matches) != 1:
            problems.append(f"Service {name} selects {len(matches)} Deployments")
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if not any(container_port(c, target) for c in containers(matches[0])):
                problems.append(f"Service {name} targets {target}, which its pods do not declare")
    return problems


def _annotation(ingress: Doc, key: str) -> str | None:
    value = (ingress["metadata"].get("annotations") or {}).get(f"nginx.ingress.kubernetes.io/{key}")
    return None if value is None else str(value)


def ingress_shape_problems(ingresses: list[Doc], services: dict[str, Doc]) -> list[str]:
    """Each Ingress: a class, TLS for its hosts, known path types, existing backends; and no
    host+path claimed by two rules (one would silently win)."""
    problems: list[str] = []
    claimed: dict[tuple[str, str, str], str] = {}
    for ingress in ingresses:
        name = ingress["metadata"]["name"]
        spec = ingress["spec"]
        if not spec.get("ingressClassName"):
            problems.append(f"Ingress {name} names no ingressClassName")
        tls_hosts = {h for t in spec.get("tls") or [] for h in t.get("hosts") or []}
        for rule in spec.get("rules") or []:
            host = str(rule.get("host"))
            if rule.get("host") not in tls_hosts:
                problems.append(f"Ingress {name}: {host} has no TLS")
            for p in rule["http"]["paths"]:
                kind = str(p.get("pathType"))
                if kind not in ("Exact", "Prefix"):
                    problems.append(f"Ingress {name}: {p['path']} has pathType {kind}")
                key = (host, p["path"].rstrip("/") or "/", kind)
                if key in claimed:
                    problems.append(
                        f"{host}{p['path']} ({kind}) is claimed twice: Ingress {claimed[key]} "
                        f"and {name}"
                    )
                claimed[key] = name
                backend = p["backend"]["service"]
                service = services.get(backend["name"])
                if service is None:
                    problems.append(f"Ingress {name}: backend {backend['name']} is no Service")
                    continue
                wanted = backend["port"].get("name", backend["port"].get("number"))
                ports = {p.get("name") for p in service["spec"]["ports"]}
                ports |= {p["port"] for p in service["spec"]["ports"]}
                if wanted not in ports:
                    problems.append(
                        f"Ingress {name}: Service {backend['name']} has no port {wanted}"
                    )
    return problems


def ingress_route_problems(ingresses: list[Doc], hosts: dict[str, str]) -> list[str]:
    """Ingest, links and rooms on one host, review on another; every public route of every
    service to exactly that service, no path claimed by two services, nothing internal routed."""
    problems: list[str] = []
    shared = {hosts.get(s) for s in SHARED_HOST_SERVICES}
    if len(shared) != 1 or None in shared:
        problems.append(f"{', '.join(SHARED_HOST_SERVICES)} are not on one public host: {shared}")
    if hosts.get("review") in shared:
        problems.append(f"the review console shares the public host {hosts.get('review')}")
    for owner in HTTP_SERVICES:
        host = hosts.get(owner)
        if not host:
            problems.append(f"no public URL for {owner} in the ConfigMaps")
            continue
        for path in sorted(public_routes(owner)):
            target = route(ingresses, host, path)
            if target is None or target[0] != owner:
                problems.append(f"{host}{path} (a {owner} route) goes to {target}")
        for path, other in LEFT_TO_ANOTHER.get(owner, {}).items():
            if path not in service_routes(owner):
                problems.append(f"{owner} has no route {path} to leave to {other}")
            target = route(ingresses, host, path)
            if target is None or target[0] != other:
                problems.append(f"{host}{path} (left by {owner} to {other}) goes to {target}")
    for (owner, old), twin in LEGACY_TWINS.items():
        if twin not in public_routes(owner):
            problems.append(f"{owner}'s {old} has no public twin {twin}")
    for i, a in enumerate(HTTP_SERVICES):
        for b in HTTP_SERVICES[i + 1 :]:
            both = public_routes(a) & public_routes(b)
            if hosts.get(a) == hosts.get(b) and both:
                problems.append(f"{a} and {b} both claim {sorted(both)} on {hosts.get(a)}")
    for host in set(hosts.values()):
        for path in INTERNAL_PATHS:
            target = route(ingresses, host, path)
            if target is not None:
                problems.append(f"{host}{path} is public (to {target})")
    for ingress in ingresses:
        for rule in ingress["spec"].get("rules") or []:
            for p in rule["http"]["paths"]:
                to_review = p["backend"]["service"]["name"] == "review"
                if to_review != (rule.get("host") == hosts.get("review")):
                    problems.append(
                        f"{rule.get('host')}{p['path']} goes to {p['backend']['service']['name']}:"
                        " the review console has a host of its own, and only it"
                    )
    return problems


def ingress_annotation_problems(ingresses: list[Doc], hosts: dict[str, str]) -> list[str]:
    """Each path group's limits: upload bodies, long-lived WebSockets, the review console's
    imports and access restriction."""
    problems: list[str] = []
    for path in UPLOAD_PATHS:
        match = matching_ingress(ingresses, hosts.get("ingest", ""), path)
        body = (_annotation(match[0], "proxy-body-size") if match else None) or "1m"
        if _size_bytes(body) <= IngestSettings().max_upload_bytes:
            problems.append(f"{path} accepts bodies up to {body}: uploads are larger")
    for service, path in WEBSOCKETS.items():
        match = matching_ingress(ingresses, hosts.get(service, ""), path)
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            timeout = (_annotation(match[0], key) if match else None) or "60"
            if int(timeout) < SOCKET_TIMEOUT_S:
                problems.append(f"the {service} WebSocket {path} has {key} {timeout} s")
    review = named(ingresses, "Ingress").get("review", {"metadata": {}})
    review_body = _annotation(review, "proxy-body-size")
    if _size_bytes(review_body or "1m") <= review_domain.IMPORT_MAX_BYTES:
        problems.append(
            f"the review Ingress accepts bodies up to {review_body}: imports are larger"
        )
    if not any(_annotation(review, k) for k in ("whitelist-source-range", "auth-url")):
        problems.append("the review Ingress is not access-restricted (allowlist or auth)")
    return problems


def ingress_problems(docs: list[Doc]) -> list[str]:
    ingresses = list(named(docs, "Ingress").values())
    hosts = public_hosts(docs)
    return [
        *ingress_shape_problems(ingresses, named(docs, "Service")),
        *ingress_route_problems(ingresses, hosts),
        *ingress_annotation_problems(ingresses, hosts),
    ]


def autoscaling_problems(docs: list[Doc], partitions: int) -> list[str]:
    problems: list[str] = []
    deployments = named(docs, "Deployment")
    hpas = list(named(docs, "HorizontalPodAutoscaler").values())
    scanner_hpas = [h for h in hpas if h["spec"]["scaleTargetRef"].get("name") == "scanner"]
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        if ref.get("kind") != "Deployment" or ref.get("name") not in deployments:
            problems.append(f"HPA {hpa['metadata']['name']} targets a missing {ref}")
    if len(scanner_hpas) != 1:
        return [*problems, f"{len(scanner_hpas)} HPAs target the scanner Deployment"]
    spec = scanner_hpas[0]["spec"]
    if not 2 <= spec.get("minReplicas", 1) <= spec["maxReplicas"] <= partitions:
        problems.append(
            f"scanner HPA {spec.get('minReplicas')}..{spec['maxReplicas']} is not within "
            f"2..{partitions} (partitions of image.uploaded)"
        )
    resources = {
        m["resource"]["name"] for m in spec.get("metrics") or [] if m["type"] == "Resource"
    }
    if "cpu" not in resources:
        problems.append("the scanner HPA does not scale on CPU")
    if "replicas" in deployments.get("scanner", {}).get("spec", {}):
        problems.append("the scanner Deployment sets replicas: every apply would undo the HPA")
    return problems


def disruption_problems(docs: list[Doc]) -> list[str]:
    problems: list[str] = []
    deployments = named(docs, "Deployment")
    min_replicas = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"].get("minReplicas", 1)
        for h in named(docs, "HorizontalPodAutoscaler").values()
    }
    pdbs = named(docs, "PodDisruptionBudget")
    if not pdbs:
        problems.append("no PodDisruptionBudget")
    for name, pdb in pdbs.items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matches = [
            d
            for d in deployments.values()
            if selector.items() <= (d["spec"]["template"]["metadata"].get("labels") or {}).items()
        ]
        if len(matches) != 1:
            problems.append(f"PDB {name} selects {len(matches)} Deployments")
            continue
        target = matches[0]["metadata"]["name"]
        replicas = matches[0]["spec"].get("replicas", min_replicas.get(target, 1))
        min_available = pdb["spec"].get("minAvailable")
        if not isinstance(min_available, int) or not 0 < min_available < replicas:
            problems.append(
                f"PDB {name}: minAvailable {min_available} of {replicas} replicas would block "
                "every node drain (or protect nothing)"
            )
    return problems


def topic_job(docs: list[Doc]) -> Doc:
    return named(docs, "Job")["kafka-topics"]


def topic_job_problems(docs: list[Doc], compose: Doc) -> list[str]:
    problems = container_hardening_problems(topic_job(docs), "Job/kafka-topics", None)
    (c,) = containers(topic_job(docs))
    env = effective_env(c, docs)
    if sorted(env.get("TOPICS", "").split()) != sorted(TOPICS):
        problems.append(f"the topic Job's TOPICS are not services/shared/events.py's {TOPICS}")
    if env.get("PARTITIONS") != topic_job_env(compose)["PARTITIONS"]:
        problems.append("the topic Job makes another partition count than compose")
    script = c["command"][-1]
    if script != TOPIC_SCRIPT.read_text():
        problems.append("the topic Job's script is not deploy/compose/create-topics.sh")
    if c.get("image") != compose["services"]["kafka-topics"]["image"]:
        problems.append("the topic Job runs another Kafka image than compose")
    return problems


# ---- Prometheus (deploy/prometheus/prometheus-k8s.yml, helper B's) finds our pods -------------
def _meta(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def relabel(config: Doc, deployment: Doc) -> dict[str, str] | None:
    """The target Prometheus makes of one of this Deployment's pods (None: dropped)."""
    template = deployment["spec"]["template"]["metadata"]
    port = main_container(deployment)["ports"][0]["containerPort"]
    labels = {
        "__address__": f"10.0.0.7:{port}",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": f"{deployment['metadata']['name']}-0",
        "__meta_kubernetes_pod_phase": "Running",
    }
    for key, value in (template.get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{_meta(key)}"] = str(value)
    for key, value in (template.get("annotations") or {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{_meta(key)}"] = str(value)
    (job,) = [j for j in config["scrape_configs"] if j.get("kubernetes_sd_configs")]
    for rule in job.get("relabel_configs") or []:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        m = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and m is None:
            return None
        if action == "drop" and m is not None:
            return None
        if action == "replace" and m is not None:
            replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = m.expand(replacement)
    return labels


def prometheus_k8s_problems(docs: list[Doc], config: Doc) -> list[str]:
    problems = []
    for name in SERVICE_NAMES:
        target = relabel(config, named(docs, "Deployment")[name])
        if target is None:
            problems.append(f"Prometheus drops the {name} pods")
        elif target.get("job") != name or target["__address__"] != f"10.0.0.7:{PORTS[name]}":
            problems.append(f"Prometheus scrapes {name} as job {target.get('job')} at {target}")
        elif target["__metrics_path__"] != "/metrics":
            problems.append(f"Prometheus scrapes {name} on {target['__metrics_path__']}")
    return problems


# ---- the tests ----------------------------------------------------------------------------------
def image_uid() -> int | None:
    return dockerfile_user_uid((ROOT / "Dockerfile").read_text())


def test_layout_and_namespace() -> None:
    assert layout_problems(manifests(), kustomization()) == []


def test_deployments() -> None:
    assert deployment_problems(manifests(), chatpic_image(load_compose()), image_uid()) == []


def test_every_variable_is_a_setting_of_its_service() -> None:
    assert env_problems(manifests(), load_yaml_docs(SECRET_TEMPLATE)) == []


def test_services_select_deployments_and_declared_ports() -> None:
    assert service_problems(manifests()) == []


def test_ingress_routes_every_public_route_and_no_internal_one() -> None:
    assert ingress_problems(manifests()) == []


def test_the_route_reader_sees_each_service() -> None:
    """Guards the ingress check itself: the routes it reads include known ones."""
    assert {"/", "/api/v1/images", "/api/v1/images/x", "/static/upload.js"} <= service_routes(
        "ingest"
    )
    assert {"/s/x/reveal", "/gallery", "/api/v1/links/x/session"} <= service_routes("links")
    assert {"/api/v1/owner/images/x", "/api/v1/images/x"} <= service_routes("links")
    rooms = service_routes("rooms")
    assert {"/rooms", "/api/v1/rooms/x/ws", "/rooms/static/rooms.js"} <= rooms
    assert not {p for p in rooms if p.startswith("/static")}  # /static is ingest's
    assert {"/login", "/api/v1/queues", "/docs"} <= service_routes("review")
    assert "/redoc" not in service_routes("review")  # its docs are behind the login


_PAGE_PATH = re.compile(r'(?:href|src|action)="(/[^"/][^"]*)"')


def page_paths(service: str) -> set[str]:
    """The same-origin paths a service's templates link, load or post to (Jinja parts as x)."""
    paths = set()
    for template in (ROOT / "services" / service / "templates").glob("*.html"):
        for raw in _PAGE_PATH.findall(template.read_text()):
            paths.add(re.sub(r"\{\{.*?\}\}", "x", raw.split("?")[0].split("#")[0]))
    return paths


@pytest.mark.parametrize("service", SHARED_HOST_SERVICES)
def test_pages_name_paths_the_shared_host_sends_to_their_service(service: str) -> None:
    """A page's /-relative links, scripts, styles and forms are routes of its own service (a
    file under its static folder, for /.../static/...), and the one public host sends them
    there: rooms' files are under /rooms/static, since /static is ingest's."""
    docs = manifests()
    host = public_hosts(docs)[service]
    ingresses = list(named(docs, "Ingress").values())
    paths = page_paths(service)
    assert paths and paths <= service_routes(service), paths - service_routes(service)
    routed = {p: route(ingresses, host, p) for p in paths}
    assert {p: to for p, to in routed.items() if to != (service, "http")} == {}


def test_scanner_autoscaling_fits_the_partitions() -> None:
    partitions = int(topic_job_env(load_compose())["PARTITIONS"])
    assert autoscaling_problems(manifests(), partitions) == []


def test_disruption_budgets() -> None:
    assert disruption_problems(manifests()) == []


def test_topic_job_matches_compose_and_the_registry(tmp_path: Path) -> None:
    docs = manifests()
    assert topic_job_problems(docs, load_compose()) == []
    (c,) = containers(topic_job(docs))
    env = {k: v for k, v in effective_env(c, docs).items() if not k.startswith("<")}
    topics = created_topics(run_topic_script(c["command"][-1], env, tmp_path))
    prefix = configmap_data(docs)["chatpic-common"]["CHATPIC_TOPIC_PREFIX"]
    assert set(topics) == {f"{prefix}{t}" for t in TOPICS}
    assert {t["replication"] for t in topics.values()} == {env["REPLICATION_FACTOR"]}


def test_prometheus_k8s_config_scrapes_every_deployment() -> None:
    path = DEPLOY / "prometheus" / "prometheus-k8s.yml"
    if not path.exists():
        pytest.skip("deploy/prometheus/prometheus-k8s.yml is not written yet")
    (config,) = load_yaml_docs(path)
    assert prometheus_k8s_problems(manifests(), config) == []


# ---- the checks can fail -------------------------------------------------------------------------
def _doc(docs: list[Doc], kind: str, name: str) -> Doc:
    doc: Doc = named(docs, kind)[name]
    return doc


def _main(docs: list[Doc], name: str) -> Doc:
    return main_container(_doc(docs, "Deployment", name))


def _env_entry(docs: list[Doc], service: str, env: str) -> Doc:
    entries: list[Doc] = [e for e in _main(docs, service)["env"] if e["name"] == env]
    (entry,) = entries
    return entry


def _paths(docs: list[Doc], ingress: str) -> list[Doc]:
    paths: list[Doc] = _doc(docs, "Ingress", ingress)["spec"]["rules"][0]["http"]["paths"]
    return paths


Checker = Callable[[list[Doc]], list[str]]


def _deployments(docs: list[Doc]) -> list[str]:
    return deployment_problems(docs, chatpic_image(load_compose()), image_uid())


def _env(docs: list[Doc]) -> list[str]:
    return env_problems(docs, load_yaml_docs(SECRET_TEMPLATE))


def _autoscaling(docs: list[Doc]) -> list[str]:
    return autoscaling_problems(docs, 6)


def _topic_job(docs: list[Doc]) -> list[str]:
    return topic_job_problems(docs, load_compose())


K8S_MUTATIONS: list[tuple[str, Callable[[list[Doc]], object], Checker, str]] = [
    (
        "readiness on /healthz",
        lambda d: _main(d, "links")["readinessProbe"]["httpGet"].update(path="/healthz"),
        _deployments,
        "readinessProbe",
    ),
    (
        "liveness on another port",
        lambda d: _main(d, "scanner")["livenessProbe"]["httpGet"].update(port=8001),
        _deployments,
        "livenessProbe",
    ),
    (
        "port env differs",
        lambda d: _env_entry(d, "rooms", "CHATPIC_PORT").update(value="8101"),
        _deployments,
        "CHATPIC_PORT",
    ),
    (
        "another image",
        lambda d: _main(d, "review").update(image="chatpic:latest"),
        _deployments,
        "image",
    ),
    (
        "wrong module",
        lambda d: _main(d, "ingest").update(command=["python", "-m", "services.links"]),
        _deployments,
        "services.ingest",
    ),
    (
        "no limits",
        lambda d: _main(d, "ingest")["resources"].pop("limits"),
        _deployments,
        "limits",
    ),
    (
        "root allowed",
        lambda d: pod_spec(_doc(d, "Deployment", "rooms"))["securityContext"].update(
            runAsNonRoot=False
        ),
        _deployments,
        "runAsNonRoot",
    ),
    (
        "another uid",
        lambda d: pod_spec(_doc(d, "Deployment", "links"))["securityContext"].update(
            runAsUser=1000
        ),
        _deployments,
        "runAsUser",
    ),
    (
        "writable root",
        lambda d: _main(d, "scanner")["securityContext"].update(readOnlyRootFilesystem=False),
        _deployments,
        "writable",
    ),
    (
        "no scrape port",
        lambda d: _doc(d, "Deployment", "ingest")["spec"]["template"]["metadata"][
            "annotations"
        ].update({"prometheus.io/port": "9000"}),
        _deployments,
        "prometheus.io/port",
    ),
    (
        "unknown env",
        lambda d: _main(d, "scanner")["env"].append({"name": "CHATPIC_PORT", "value": "1"}),
        _env,
        "no setting of scanner",
    ),
    (
        "http ConfigMap on the scanner",
        lambda d: _main(d, "scanner")["envFrom"].append({"configMapRef": {"name": "chatpic-http"}}),
        _env,
        "no settings of scanner",
    ),
    (
        "missing Secret",
        lambda d: _main(d, "review")["envFrom"].append({"secretRef": {"name": "nope"}}),
        _env,
        "does not exist",
    ),
    (
        "Service selector typo",
        lambda d: _doc(d, "Service", "links")["spec"]["selector"].update(
            {"app.kubernetes.io/name": "link"}
        ),
        service_problems,
        "selects 0",
    ),
    (
        "Service targets an undeclared port",
        lambda d: _doc(d, "Service", "rooms")["spec"]["ports"][0].update(targetPort="metrics"),
        service_problems,
        "do not declare",
    ),
    (
        "backend to a missing Service",
        lambda d: _paths(d, "links")[0]["backend"]["service"].update(name="share"),
        ingress_problems,
        "is no Service",
    ),
    (
        "a public route not routed",
        lambda d: _paths(d, "links").pop(3),  # /gallery
        ingress_problems,
        "/gallery",
    ),
    (
        "metrics exposed",
        lambda d: _paths(d, "ingest")[0].update(pathType="Prefix"),  # "/" for everything
        ingress_problems,
        "/metrics is public",
    ),
    (
        "a path claimed twice",
        lambda d: _paths(d, "links").append(copy.deepcopy(_paths(d, "rooms")[0])),
        ingress_problems,
        "claimed twice",
    ),
    (
        "links takes /api/v1/images",
        lambda d: _paths(d, "ingest")[3]["backend"]["service"].update(name="links"),
        ingress_problems,
        "(a ingest route) goes to ('links'",
    ),
    (
        "links on a host of its own",
        lambda d: _doc(d, "ConfigMap", "chatpic-http")["data"].update(
            CHATPIC_LINKS_PUBLIC_URL="https://share.chatpic.example.com"
        ),
        ingress_problems,
        "not on one public host",
    ),
    (
        "review on the public host",
        lambda d: _doc(d, "Ingress", "review")["spec"]["rules"][0].update(
            host="chatpic.example.com"
        ),
        ingress_problems,
        "a host of its own",
    ),
    (
        "rooms socket with the default timeout",
        lambda d: _doc(d, "Ingress", "rooms-socket")["metadata"]["annotations"].pop(
            "nginx.ingress.kubernetes.io/proxy-read-timeout"
        ),
        ingress_problems,
        "rooms WebSocket",
    ),
    (
        "links session socket with the default timeout",
        lambda d: _doc(d, "Ingress", "links-session")["metadata"]["annotations"].pop(
            "nginx.ingress.kubernetes.io/proxy-send-timeout"
        ),
        ingress_problems,
        "links WebSocket",
    ),
    (
        "the owner path not routed",
        lambda d: _paths(d, "links").pop(6),  # /api/v1/owner
        ingress_problems,
        "/api/v1/owner/images/x (a links route)",
    ),
    (
        "upload body limit",
        lambda d: _doc(d, "Ingress", "ingest")["metadata"]["annotations"].update(
            {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}
        ),
        ingress_problems,
        "uploads are larger",
    ),
    (
        "review open to all",
        lambda d: _doc(d, "Ingress", "review")["metadata"]["annotations"].pop(
            "nginx.ingress.kubernetes.io/whitelist-source-range"
        ),
        ingress_problems,
        "access-restricted",
    ),
    (
        "public URL of another host",
        lambda d: _doc(d, "ConfigMap", "chatpic-http")["data"].update(
            CHATPIC_ROOMS_PUBLIC_URL="https://chat.example.com"
        ),
        ingress_problems,
        "chat.example.com",
    ),
    (
        "HPA aims elsewhere",
        lambda d: _doc(d, "HorizontalPodAutoscaler", "scanner")["spec"]["scaleTargetRef"].update(
            name="scanners"
        ),
        _autoscaling,
        "scanner",
    ),
    (
        "HPA beyond partitions",
        lambda d: _doc(d, "HorizontalPodAutoscaler", "scanner")["spec"].update(maxReplicas=12),
        _autoscaling,
        "partitions",
    ),
    (
        "scanner replicas fixed",
        lambda d: _doc(d, "Deployment", "scanner")["spec"].update(replicas=2),
        _autoscaling,
        "undo the HPA",
    ),
    (
        "PDB blocks drains",
        lambda d: _doc(d, "PodDisruptionBudget", "links")["spec"].update(minAvailable=2),
        disruption_problems,
        "block",
    ),
    (
        "PDB selects nothing",
        lambda d: _doc(d, "PodDisruptionBudget", "rooms")["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "room"}
        ),
        disruption_problems,
        "selects 0",
    ),
    (
        "topic missing from the Job",
        lambda d: containers(_doc(d, "Job", "kafka-topics"))[0]["env"][0].update(
            value="image.uploaded image.scanned"
        ),
        _topic_job,
        "TOPICS",
    ),
    (
        "Job without limits",
        lambda d: containers(_doc(d, "Job", "kafka-topics"))[0]["resources"].pop("limits"),
        _topic_job,
        "limits",
    ),
    (
        "resource outside the namespace",
        lambda d: _doc(d, "Service", "ingest")["metadata"].update(namespace="default"),
        lambda d: layout_problems(d, kustomization()),
        "namespace",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "checker", "expected"), [pytest.param(m, c, e, id=i) for i, m, c, e in K8S_MUTATIONS]
)
def test_k8s_mutations(
    mutate: Callable[[list[Doc]], object], checker: Checker, expected: str
) -> None:
    docs = copy.deepcopy(manifests())
    assert checker(docs) == []
    mutate(docs)
    problems = checker(docs)
    assert any(expected in p for p in problems), problems


def test_secret_check_fails_on_a_real_value() -> None:
    secrets = load_yaml_docs(SECRET_TEMPLATE)
    secrets[0]["stringData"]["CHATPIC_SECRET_SALT"] = "9f86d081884c7d659a2feaa0c55ad015"
    assert any("placeholder" in p for p in env_problems(manifests(), secrets))


def test_prometheus_check_fails_when_a_pod_loses_its_label() -> None:
    path = DEPLOY / "prometheus" / "prometheus-k8s.yml"
    if not path.exists():
        pytest.skip("deploy/prometheus/prometheus-k8s.yml is not written yet")
    (config,) = load_yaml_docs(path)
    docs = copy.deepcopy(manifests())
    labels = _doc(docs, "Deployment", "rooms")["spec"]["template"]["metadata"]["labels"]
    del labels["app.kubernetes.io/part-of"]
    assert any("rooms" in p for p in prometheus_k8s_problems(docs, config))


def test_kustomization_check_fails_on_a_forgotten_file() -> None:
    kustomize = copy.deepcopy(kustomization())
    kustomize["resources"].remove("rooms.yaml")
    assert layout_problems(manifests(), kustomize)
    kustomize["resources"] += ["rooms.yaml", SECRET_TEMPLATE.name]
    assert any("placeholders" in p for p in layout_problems(manifests(), kustomize))
