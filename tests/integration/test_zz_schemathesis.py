"""schemathesis against each service's OpenAPI schema on the live stack (real servers): no
generated request, valid or invalid, gets a 5xx (schemathesis's ``not_a_server_error``) or
hangs.

Per operation, three bounded and repeatable phases: schemathesis's deterministic coverage cases
(missing, empty, boundary and mistyped values, wrong media types, unexpected methods), then
derandomized random valid and invalid requests, then the same with the path parameters naming
things that exist (an image, a link and its token, a gallery entry, a room, a review job, a
bank entry), so the generated bodies reach the code behind the lookups.

Runs last (``zz``): the review console's fuzzing has side effects later tests could trip over
(bank entries with generated hashes apply to live images; accounts; leased jobs). Every request
comes from the fuzzer's own loopback address (``FUZZ_SOURCE``), so the rate budgets of
127.0.0.1 that other tests rely on are not spent; a 429 is a fine answer.

Run alone: ``.venv/bin/pytest -q -p no:cacheprovider tests/integration/test_zz_schemathesis.py``
(``-s`` prints the answers per service).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from services.scanner.hashing import phash_hex
from services.scanner.imaging import load_normalized
from services.shared.clients import client_key
from tests.integration.links_helpers import unique_photo
from tests.live import Live

FUZZ_SOURCE = "127.0.0.91"  # the fuzzer's own client identity (all of 127/8 is loopback)
# FUZZ_API_SCALE=N multiplies every bound below for a longer hunt (default 1: the suite's run).
SCALE = max(1, int(os.environ.get("FUZZ_API_SCALE", "1")))
MAX_COVERAGE_CASES = 40 * SCALE  # per operation
RANDOM = {GenerationMode.POSITIVE: 12 * SCALE, GenerationMode.NEGATIVE: 8 * SCALE}
KNOWN = {GenerationMode.POSITIVE: 8 * SCALE, GenerationMode.NEGATIVE: 4 * SCALE}  # real ids
TIMEOUT_S = 15.0  # a request that takes longer than this is reported as a hang
# The generated account operations act on a throwaway account, never on the admins the
# session (or this fuzzer) is logged in as.
FUZZ_TARGET_ACCOUNT = "fuzz-target"
FUZZ_BANK = "fuzz-bank"


class SourceAddress(HTTPAdapter):
    """Connections from one loopback address: the fuzzer's own rate-limit key everywhere."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


@dataclass
class Target:
    """One service under fuzzing: where, how, what stays fixed, and what came back."""

    schema: Any
    base_url: str
    session: requests.Session
    pinned: dict[str, str] = field(default_factory=dict)  # path parameters, always
    calls: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unsendable: int = 0  # cases the HTTP client itself refuses to send (e.g. bad header bytes)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return f"{self.calls} requests ({statuses}); {self.unsendable} unsendable"

    def send(self, case: Any) -> str | None:
        """Call the live service with one case; a failure's description, or None."""
        for name, value in self.pinned.items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = value
        label = case.operation.label
        try:
            response = case.call(base_url=self.base_url, session=self.session, timeout=TIMEOUT_S)
        except requests.Timeout:
            return f"{label}: no answer within {TIMEOUT_S} s"
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError):
            self.unsendable += 1
            return None
        self.calls += 1
        self.by_status[response.status_code] = self.by_status.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except FailureGroup as exc:
            return f"{label}:\n{exc}"
        return None


def coverage_phase(target: Target, operation: Any) -> None:
    cases = target.schema.iter_coverage_cases(
        operation,
        generation_modes=list(RANDOM),
        generation_config=target.schema.config.generation_for(operation=operation),
    )
    for case in itertools.islice(cases, MAX_COVERAGE_CASES):
        failure = target.send(case)
        if failure:  # one failure per operation and phase is enough to report
            target.failures.append(f"[coverage] {failure}")
            return


def random_phase(
    target: Target,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    path_parameters: dict[str, str] | None = None,
) -> None:
    failed: list[str] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        if not failed:
            failure = target.send(case)
            if failure:
                failed.append(f"[{mode.value}{' known ids' if path_parameters else ''}] {failure}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label
    target.failures += failed


def fuzz(target: Target, operation: Any, known: dict[str, str]) -> None:
    coverage_phase(target, operation)
    for mode, examples in RANDOM.items():
        random_phase(target, operation, mode, examples)
    real = {k: v for k, v in known.items() if f"{{{k}}}" in operation.path}
    if real:
        for mode, examples in KNOWN.items():
            random_phase(target, operation, mode, examples, real)


def source_client(base_url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=FUZZ_SOURCE)
    return httpx.Client(base_url=base_url, transport=transport, timeout=30)


def known_ids(live: Live) -> dict[str, str]:
    """Things that exist, made from the fuzzer's address: a cleared image with a link and a
    gallery entry, its report's review job, a room, a bank entry that matches nothing alive."""
    p = live.stack.ports
    photo = unique_photo(90991)
    with (
        source_client(f"http://127.0.0.1:{p.ingest}") as ingest,
        source_client(f"http://127.0.0.1:{p.links}") as links,
        source_client(f"http://127.0.0.1:{p.rooms}") as rooms,
    ):
        body = ingest.post("/api/v1/images", files={"file": ("f.jpg", photo)}).json()
        image_id, owner_token = body["image_id"], body["owner_token"]
        assert live.wait_status(image_id) == "cleared"
        owner = {"image_id": image_id, "owner_token": owner_token, "max_views": 50}
        link = links.post("/api/v1/links", json=owner).json()
        public = links.post("/api/v1/links", json={**owner, "gallery_category": "nature"}).json()
        ticket = links.post(f"/s/{link['token']}/reveal").json()["image_url"].split("/")[-2]
        report = {"reason": "other", "image_id": image_id}
        assert links.post("/api/v1/reports", json=report).status_code == 201
        room = rooms.post("/api/v1/rooms", json={"name": "fuzz", "lifetime_s": 3600}).json()
    inverted = f"{int(phash_hex(load_normalized(photo)), 16) ^ (2**64 - 1):016x}"
    entry = live.review.post(
        f"/api/v1/banks/{FUZZ_BANK}/entries", json={"hash": inverted, "reason": "fuzz"}
    )
    assert entry.status_code == 201, entry.text
    job = live.db.review_jobs.find_one({"image_id": image_id, "kind": "reports"})
    room_report = live.db.room_reports.find_one() or {}
    found = {
        "image_id": image_id,
        "link_id": link["link_id"],
        "token": link["token"],
        "ticket": ticket,
        "public_id": public["gallery"]["public_id"],
        "slug": room["slug"],
        "job_id": str(job["_id"]),
        "bank": FUZZ_BANK,
        "entry_id": str(entry.json()["entry_id"]),
        "queue": "reports",
        "report_id": str(room_report.get("_id", "")),
    }
    return {k: v for k, v in found.items() if v}


def target_for(live: Live, service: str) -> Target:
    """The schema the running service serves, and a session from the fuzzer's address."""
    session = requests.Session()
    session.mount("http://", SourceAddress(FUZZ_SOURCE))
    pinned: dict[str, str] = {}
    client: httpx.Client = getattr(live, service)
    if service == "review":  # the console's schema and API need a login and the CSRF token
        client, _ = live.create_reviewer(f"fuzz-admin-{FUZZ_SOURCE.rsplit('.', 1)[1]}", "admin")
        if live.db.review_accounts.find_one({"_id": FUZZ_TARGET_ACCOUNT}) is None:
            live.create_reviewer(FUZZ_TARGET_ACCOUNT)
        session.headers["X-CSRF-Token"] = client.headers["x-csrf-token"]
        session.cookies.update(dict(client.cookies.items()))
        pinned["username"] = FUZZ_TARGET_ACCOUNT
    raw = client.get("/openapi.json")
    assert raw.status_code == 200, raw.text
    schema = schemathesis.openapi.from_dict(raw.json())
    return Target(schema, str(client.base_url).rstrip("/"), session, pinned)


@pytest.fixture(scope="module")
def known(live: Live) -> dict[str, str]:
    return known_ids(live)


@pytest.mark.parametrize("service", ["ingest", "links", "rooms", "review"])
def test_no_generated_request_gets_a_server_error(
    live: Live, known: dict[str, str], service: str
) -> None:
    target = target_for(live, service)
    ops = [result.ok() for result in target.schema.get_all_operations()]
    assert len(ops) >= {"ingest": 3, "links": 10, "rooms": 5, "review": 20}[service]
    with target.session:
        for operation in ops:
            fuzz(target, operation, known)
    print(f"{service}: {len(ops)} operations, {target.summary()}")
    assert not target.failures, "\n\n".join(target.failures)
    # The run reached the service, from the fuzzer's own address, past the login gate.
    assert target.calls >= len(ops) * 10, target.summary()
    assert any(200 <= s < 300 for s in target.by_status), target.summary()
    assert target.by_status.get(401, 0) < target.calls / 4, target.summary()
    if service == "rooms":
        key = client_key(live.stack.salt().encode(), FUZZ_SOURCE, "rooms")
        assert live.db.rate_limits.find_one({"_id": {"$regex": f"^rooms:{key}:"}}), key
