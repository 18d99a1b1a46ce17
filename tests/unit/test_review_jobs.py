"""Review jobs without a database: hand-out order (priority, then age), leases and their
expiry, who may decide, report aggregation and auto-hide, decisions and their effects, and the
intake of held images. The repositories are small in-memory twins with the same contracts as
``services.shared.jobrepo.JobRepo`` and friends (one conditional write per move)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.review import decisions, intake, jobs
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared import jobrepo
from services.shared.errors import DomainError
from services.shared.events import IMAGE_TAKEN_DOWN
from services.shared.kafka import MemoryPublisher
from services.shared.reports import ReportReason, file_report
from services.shared.repos import now

Doc = dict[str, Any]
SETTINGS = ReviewSettings(review_lease_s=300)


@dataclass(frozen=True)
class Who:
    username: str
    is_admin: bool = False


ALICE, BOB, ADMIN = Who("alice"), Who("bob"), Who("root", is_admin=True)


class FakeJobs:
    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.n = 0

    def _make(self, kind: str, image_id: str, priority: int, created: datetime | None) -> Doc:
        self.n += 1
        doc = {
            "_id": f"job{self.n:03d}",
            "kind": kind,
            "queue": kind,
            "state": jobrepo.OPEN,
            "image_id": image_id,
            "priority": priority,
            "created_at": created or now(),
            "lease_owner": None,
            "lease_until": None,
            "open_key": jobrepo.open_key(kind, image_id),
        }
        self.docs[doc["_id"]] = doc
        return doc

    def _open(self, kind: str, image_id: str) -> Doc | None:
        key = jobrepo.open_key(kind, image_id)
        return next((d for d in self.docs.values() if d["open_key"] == key), None)

    def add_report(self, image_id: str, reporter: str, reason: str, priority: int) -> Doc:
        job = self._open(jobrepo.REPORTS, image_id) or self._make(
            jobrepo.REPORTS, image_id, priority, None
        )
        if reporter not in job.setdefault("reporters", []):
            job["reporters"].append(reporter)
        job["reports"] = job.get("reports", 0) + 1
        # reasons count distinct reporters per reason, as JobRepo's conditional $addToSet does
        reason_key = f"{reason}:{reporter}"
        if reason_key not in job.setdefault("reason_reporters", []):
            job["reason_reporters"].append(reason_key)
            reasons = job.setdefault("reasons", {})
            reasons[reason] = reasons.get(reason, 0) + 1
        job["priority"] = min(job["priority"], priority)
        return copy.deepcopy(job)

    def open_job(self, kind: str, image_id: str, fields: Doc | None = None) -> str | None:
        if self._open(kind, image_id) is not None:
            return None
        doc = self._make(kind, image_id, jobrepo.DEFAULT_PRIORITY, None)
        doc.update(fields or {})
        return str(doc["_id"])

    def mark(self, job_id: str, fields: Doc) -> None:
        for key, value in fields.items():
            target = self.docs[job_id]
            *path, last = key.split(".")
            for part in path:
                target = target.setdefault(part, {})
            target[last] = value

    def get(self, job_id: str) -> Doc | None:
        doc = self.docs.get(job_id)
        return copy.deepcopy(doc) if doc else None

    def open_for_image(self, image_id: str) -> list[Doc]:
        return [copy.deepcopy(d) for d in self.docs.values() if _open(d, image_id=image_id)]

    def open_jobs(self, limit: int) -> list[Doc]:
        return [copy.deepcopy(d) for d in self.docs.values() if _open(d)][:limit]

    def open_image_ids(self, image_ids: list[str]) -> set[str]:
        return {
            d["image_id"] for d in self.docs.values() if _open(d) and d["image_id"] in image_ids
        }

    def _free(self, d: Doc, at: datetime) -> bool:
        return d["lease_until"] is None or d["lease_until"] <= at

    def candidates(self, queue: str, at: datetime, limit: int) -> list[Doc]:
        found = [d for d in self.docs.values() if _open(d, queue=queue) and self._free(d, at)]
        found.sort(key=lambda d: (d["priority"], d["created_at"]))
        return [copy.deepcopy(d) for d in found[:limit]]

    def held_by(self, owner: str, queue: str, at: datetime) -> Doc | None:
        for d in sorted(self.docs.values(), key=lambda d: d["created_at"]):
            if _open(d, queue=queue) and d["lease_owner"] == owner and d["lease_until"] > at:
                return copy.deepcopy(d)
        return None

    def lease(self, job_id: str, queue: str, owner: str, until: datetime, at: datetime) -> bool:
        d = self.docs.get(job_id)
        if d is None or not _open(d, queue=queue):
            return False
        if not (self._free(d, at) or d["lease_owner"] == owner):
            return False
        d.update(lease_owner=owner, lease_until=until)
        return True

    def release(self, job_id: str, owner: str) -> bool:
        d = self.docs[job_id]
        if not _open(d) or d["lease_owner"] != owner:
            return False
        d.update(lease_owner=None, lease_until=None)
        return True

    def _held(self, job: Doc, owner: str | None, at: datetime) -> Doc | None:
        d = self.docs[job["_id"]]
        if not _open(d, queue=job["queue"]):
            return None
        if owner is not None and not (d["lease_owner"] == owner and d["lease_until"] > at):
            return None
        return d

    def settle(self, job: Doc, state: str, fields: Doc, owner: str | None, at: datetime) -> bool:
        d = self._held(job, owner, at)
        if d is None:
            return False
        d.update(fields, state=state, open_key=f"{d['open_key']}:{d['_id']}", lease_owner=None)
        d["lease_until"] = None
        return True

    def reopen(self, job: Doc) -> bool:
        d = self.docs[job["_id"]]
        d.update(state=jobrepo.OPEN, open_key=job["open_key"], decision=None)
        return True

    def escalate(self, job: Doc, escalation: Doc, owner: str | None, at: datetime) -> bool:
        d = self._held(job, owner, at)
        if d is None:
            return False
        d.update(queue=jobrepo.ESCALATED, escalation=escalation, lease_owner=None, lease_until=None)
        return True

    def close(self, job: Doc, reason: str) -> bool:
        return self.settle(job, jobrepo.CLOSED, {"closed_reason": reason}, None, now())

    def depth(self, queue: str) -> tuple[int, datetime | None]:
        found = [d["created_at"] for d in self.docs.values() if _open(d, queue=queue)]
        return len(found), min(found, default=None)

    def recent(self, queue: str, limit: int) -> list[Doc]:
        return self.candidates(queue, datetime.min.replace(tzinfo=UTC), limit)


def _open(d: Doc, **match: str) -> bool:
    return d["state"] == jobrepo.OPEN and all(d[k] == v for k, v in match.items())


class FakeImages:
    def __init__(self, **docs: Doc) -> None:
        self.docs = {k: {"_id": k, **v} for k, v in docs.items()}

    def get(self, image_id: str) -> Doc | None:
        return copy.deepcopy(self.docs.get(image_id))

    def hide(self, image_id: str, hidden_by: str) -> bool:
        d = self.docs[image_id]
        if d["status"] != "cleared":
            return False
        d.update(status="review", hidden_by=hidden_by)
        return True

    def clear(self, image_id: str, from_status: str, decision: Doc) -> bool:
        d = self.docs[image_id]
        if d["status"] != from_status:
            return False
        d.update(status="cleared", cleared_at=now(), clearance=decision)
        d.pop("hidden_by", None)
        return True

    def restore_removed(self, image_id: str, decision: Doc) -> bool:
        if self.docs[image_id].get("purge_started_at") or self.docs[image_id].get("purged_at"):
            return False
        return self.clear(image_id, "removed", decision)

    def take_down(self, image_id: str, removal: Doc) -> bool:
        d = self.docs[image_id]
        if d["status"] not in ("cleared", "review"):
            return False
        d.update(status="removed", removal=removal)
        return True

    def statuses(self, image_ids: list[str]) -> dict[str, str]:
        return {i: self.docs[i]["status"] for i in image_ids if i in self.docs}

    def list_by_status(self, status: str, limit: int = 100) -> list[Doc]:
        return [copy.deepcopy(d) for d in self.docs.values() if d["status"] == status][:limit]


class Recorder:
    """Reports, audit, links and banks: records what was asked of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.inserted: list[Doc] = []

    def insert(self, doc: Doc) -> None:
        self.inserted.append(doc)

    def settle_for_image(self, image_id: str, job_id: str) -> int:
        self.calls.append(("settle_reports", image_id))
        return 1

    def for_image(self, image_id: str, limit: int = 50) -> list[Doc]:
        return []

    def record(self, action: str, actor: str, target: str, reason: str, **data: Any) -> None:
        entry = {"action": action, "actor": actor, "target": target, "reason": reason, **data}
        self.calls.append(("audit", entry))

    def restore_removed(self, image_id: str) -> int:
        self.calls.append(("restore_links", image_id))
        return 1

    def count_for_image(self, image_id: str, at: datetime) -> tuple[int, int]:
        return 2, 1

    def settings(self, bank: str) -> Doc | None:
        return None

    def audits(self) -> list[Doc]:
        return [c[1] for c in self.calls if c[0] == "audit"]


@dataclass
class World:
    jobs: FakeJobs
    images: FakeImages
    rec: Recorder
    publisher: MemoryPublisher

    @property
    def ports(self) -> Ports:
        """Only what jobs, decisions and intake use (whatever else Ports carries)."""
        fields = {"reports": self.rec, "banks": self.rec, "audit": self.rec, "links": self.rec}
        ns = SimpleNamespace(images=self.images, jobs=self.jobs, publisher=self.publisher, **fields)
        return cast(Ports, ns)


def world(**images: Doc) -> World:
    return World(FakeJobs(), FakeImages(**images), Recorder(), MemoryPublisher())


def ago(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)


# --- hand-out order and leases ---------------------------------------------------------------


def test_lower_priority_first_then_oldest_first() -> None:
    w = world()
    old = w.jobs._make("reports", "a", 1, ago(300))["_id"]
    newer = w.jobs._make("reports", "b", 1, ago(100))["_id"]
    urgent = w.jobs._make("reports", "c", 0, ago(10))["_id"]
    w.jobs._make("scanner", "d", 0, ago(900))  # another queue
    order = [jobs.lease_next(w.ports, "reports", Who(f"r{i}"), 300) for i in range(4)]
    assert [j["_id"] if j else None for j in order] == [urgent, old, newer, None]


def test_a_reviewer_gets_back_the_job_they_hold_unless_they_skip_it() -> None:
    w = world()
    first = w.jobs._make("reports", "a", 1, ago(300))["_id"]
    second = w.jobs._make("reports", "b", 1, ago(200))["_id"]
    assert jobs.lease_next(w.ports, "reports", ALICE, 300)["_id"] == first  # type: ignore[index]
    assert jobs.lease_next(w.ports, "reports", ALICE, 300)["_id"] == first  # type: ignore[index]
    skipped = jobs.lease_next(w.ports, "reports", ALICE, 300, skip={first})
    assert skipped is not None and skipped["_id"] == second
    assert jobs.lease_next(w.ports, "reports", BOB, 300) is None  # both held by alice


def test_an_expired_lease_is_free_again() -> None:
    w = world()
    job_id = w.jobs._make("reports", "a", 1, ago(300))["_id"]
    assert jobs.lease_next(w.ports, "reports", ALICE, 300) is not None
    assert jobs.lease_next(w.ports, "reports", BOB, 300) is None
    with pytest.raises(DomainError) as refused:
        jobs.lease_job(w.ports, job_id, BOB, 300)
    assert refused.value.code == "leased_elsewhere" and refused.value.status == 409
    w.jobs.docs[job_id]["lease_until"] = ago(1)
    taken = jobs.lease_next(w.ports, "reports", BOB, 300)
    assert taken is not None and taken["lease_owner"] == "bob"


def test_queues_are_checked_and_escalated_is_for_admins() -> None:
    w = world()
    with pytest.raises(DomainError) as unknown:
        jobs.lease_next(w.ports, "nope", ALICE, 300)
    assert unknown.value.code == "unknown_queue"
    with pytest.raises(DomainError) as admin_only:
        jobs.lease_next(w.ports, "escalated", ALICE, 300)
    assert admin_only.value.code == "admin_only" and admin_only.value.status == 403
    assert jobs.lease_next(w.ports, "escalated", ADMIN, 300) is None


@pytest.mark.parametrize(
    ("owner", "until", "me", "code"),
    [
        ("alice", 60, ALICE, None),
        ("alice", 60, BOB, "leased_elsewhere"),
        ("alice", -1, ALICE, "lease_required"),
        (None, None, BOB, "lease_required"),
        ("alice", 60, ADMIN, None),  # admins may decide any open job
    ],
)
def test_who_may_decide(owner: str | None, until: int | None, me: Who, code: str | None) -> None:
    job = {
        "state": "open",
        "queue": "reports",
        "lease_owner": owner,
        "lease_until": None if until is None else now() + timedelta(seconds=until),
    }
    if code is None:
        jobs.check_may_decide(job, me, now())
        return
    with pytest.raises(DomainError) as refused:
        jobs.check_may_decide(job, me, now())
    assert refused.value.code == code and refused.value.status == 409


def test_settled_and_escalated_jobs_refuse_reviewers() -> None:
    settled = {"state": "decided", "queue": "reports", "lease_owner": None, "lease_until": None}
    with pytest.raises(DomainError) as done:
        jobs.check_may_decide(settled, ADMIN, now())
    assert done.value.code == "job_settled"
    escalated = {**settled, "state": "open", "queue": "escalated"}
    with pytest.raises(DomainError) as admins:
        jobs.check_may_decide(escalated, ALICE, now())
    assert admins.value.code == "admin_only"
    jobs.check_may_decide(escalated, ADMIN, now())


# --- reasons and actions ---------------------------------------------------------------------


def test_policy_reasons_are_fixed_and_match_the_action() -> None:
    assert next(iter(jobs.POLICY_REASONS)) == "no_violation" and len(jobs.POLICY_REASONS) == 8
    assert jobs.check_reason(jobs.Action.CLEAR, "no_violation") == "no_violation"
    assert jobs.check_reason(jobs.Action.REMOVE, "spam") == "spam"
    assert jobs.check_reason(jobs.Action.ESCALATE, "minor_safety") == "minor_safety"
    for action, reason, code in [
        (jobs.Action.CLEAR, "", "invalid_reason"),
        (jobs.Action.CLEAR, "because", "invalid_reason"),
        (jobs.Action.CLEAR, "violence", "reason_mismatch"),
        (jobs.Action.OVERTURN, "spam", "reason_mismatch"),
        (jobs.Action.UPHOLD, "no_violation", "reason_mismatch"),
        (jobs.Action.REMOVE_BAN, "no_violation", "reason_mismatch"),
    ]:
        with pytest.raises(DomainError) as refused:
            jobs.check_reason(action, reason)
        assert refused.value.code == code, (action, reason)


def test_actions_per_kind_and_escalated() -> None:
    assert jobs.actions_for({"kind": "appeals", "queue": "appeals"}) == (
        jobs.Action.UPHOLD,
        jobs.Action.OVERTURN,
        jobs.Action.ESCALATE,
    )
    escalated = jobs.actions_for({"kind": "reports", "queue": "escalated"})
    assert jobs.Action.ESCALATE not in escalated and jobs.Action.REMOVE_BAN in escalated


# --- report intake ---------------------------------------------------------------------------


def report(w: World, image_id: str, reporter: str, reason: ReportReason, hide_at: int = 3) -> Any:
    return file_report(
        reports=w.rec,  # type: ignore[arg-type]
        images=w.images,  # type: ignore[arg-type]
        links=None,  # type: ignore[arg-type]
        salt=b"s",
        reason=reason,
        details="",
        reporter=reporter,
        image_id=image_id,
        jobs=w.jobs,  # type: ignore[arg-type]
        auto_hide_reporters=hide_at,
    )


def test_reports_of_one_image_aggregate_and_distinct_reporters_hide_it() -> None:
    w = world(img={"status": "cleared"})
    filed = [
        report(w, "img", "h1", ReportReason.SPAM),
        report(w, "img", "h1", ReportReason.HARASSMENT),  # same person again
        report(w, "img", "h2", ReportReason.SPAM),
    ]
    assert len({f.job_id for f in filed}) == 1 and not any(f.auto_hidden for f in filed)
    assert w.images.docs["img"]["status"] == "cleared"
    third = report(w, "img", "h3", ReportReason.VIOLENCE)
    assert third.auto_hidden and w.images.docs["img"]["status"] == "review"
    assert w.images.docs["img"]["hidden_by"] == "reports"
    job = w.jobs.docs[third.job_id]
    assert job["reports"] == 4 and len(job["reporters"]) == 3 and job["auto_hidden"]
    assert job["reasons"] == {"spam": 2, "harassment": 1, "violence": 1}
    assert not report(w, "img", "h4", ReportReason.SPAM).auto_hidden  # already hidden
    assert len(w.rec.inserted) == 5  # every report is kept


def test_repeat_reports_count_once_per_reporter_and_reason() -> None:
    """One client filing 20 spam reports is one spam reporter: "spam x5" from 5 people, not
    x23. A different reason from the same reporter counts for that reason; every report is
    still stored and counted in the total; auto-hide still needs distinct reporters."""
    w = world(img={"status": "cleared"})
    for _ in range(20):
        assert not report(w, "img", "pest", ReportReason.SPAM, hide_at=3).auto_hidden
    report(w, "img", "pest", ReportReason.HARASSMENT, hide_at=3)
    assert w.images.docs["img"]["status"] == "cleared"  # one person, however many reports
    report(w, "img", "h2", ReportReason.SPAM, hide_at=3)
    report(w, "img", "h2", ReportReason.SPAM, hide_at=3)
    assert w.images.docs["img"]["status"] == "cleared"
    third = report(w, "img", "h3", ReportReason.SPAM, hide_at=3)
    assert third.auto_hidden and w.images.docs["img"]["hidden_by"] == "reports"
    for who in ("h4", "h5"):
        report(w, "img", who, ReportReason.SPAM, hide_at=3)
    job = w.jobs.docs[str(third.job_id)]
    assert job["reasons"] == {"spam": 5, "harassment": 1}
    assert job["reports"] == 26 and len(job["reporters"]) == 5
    assert len(w.rec.inserted) == 26  # every report document is kept
    view = jobs.job_view(w.ports, str(third.job_id), ADMIN)
    assert view["reports"]["reasons"] == {"spam": 5, "harassment": 1}
    assert (view["reports"]["count"], view["reports"]["reporters"]) == (26, 5)
    (listed,) = jobs.queue_listing(w.ports, "reports", ADMIN)
    assert listed["reasons"] == {"spam": 5, "harassment": 1}


def test_minor_safety_puts_the_job_first_and_zero_never_hides() -> None:
    w = world(img={"status": "cleared"})
    report(w, "img", "h1", ReportReason.SPAM, hide_at=0)
    filed = report(w, "img", "h2", ReportReason.MINOR_SAFETY, hide_at=0)
    assert w.jobs.docs[filed.job_id]["priority"] == 0
    for i in range(5):
        report(w, "img", f"x{i}", ReportReason.SPAM, hide_at=0)
    assert w.images.docs["img"]["status"] == "cleared"


def test_reports_of_an_image_past_review_open_no_job() -> None:
    w = world(img={"status": "removed"})
    filed = report(w, "img", "h1", ReportReason.SPAM)
    assert filed.job_id is None and not w.jobs.docs and w.rec.inserted


# --- decisions -------------------------------------------------------------------------------


def leased(w: World, kind: str, image_id: str, who: Who = ALICE) -> str:
    job_id = w.jobs._make(kind, image_id, 1, ago(120))["_id"]
    jobs.lease_job(w.ports, job_id, who, 300)
    return str(job_id)


def test_clear_clears_the_held_image_closes_other_jobs_and_audits() -> None:
    w = world(img={"status": "review", "hidden_by": "reports"})
    job_id = leased(w, "reports", "img")
    other = w.jobs._make("scanner", "img", 1, ago(60))["_id"]
    done = decisions.decide(w.ports, SETTINGS, job_id, ALICE, "clear", "no_violation", note="ok")
    assert done.action == "clear" and done.next_job_id is None
    img = w.images.docs["img"]
    assert img["status"] == "cleared" and img["cleared_at"] and "hidden_by" not in img
    assert w.jobs.docs[job_id]["state"] == "decided"
    assert w.jobs.docs[job_id]["decision"]["by"] == "alice"
    assert w.jobs.docs[other]["state"] == "closed"
    assert ("settle_reports", "img") in w.rec.calls
    (audit,) = w.rec.audits()
    assert audit["action"] == "review.clear" and audit["actor"] == "alice"
    assert audit["target"] == "img" and audit["reason"] == "no_violation"
    assert audit["note"] == "ok" and audit["job_id"] == job_id


def test_remove_takes_down_and_announces_then_leases_the_next_job() -> None:
    w = world(img={"status": "cleared"}, other={"status": "cleared"})
    job_id = leased(w, "reports", "img")
    nxt = w.jobs._make("reports", "other", 1, ago(30))["_id"]
    done = decisions.decide(w.ports, SETTINGS, job_id, ALICE, "remove", "spam")
    assert w.images.docs["img"]["status"] == "removed"
    assert w.images.docs["img"]["removal"]["reason"] == "review:spam"
    assert [r[0] for r in w.publisher.records] == [IMAGE_TAKEN_DOWN.topic]
    assert done.next_job_id == nxt and w.jobs.docs[nxt]["lease_owner"] == "alice"


def test_a_decision_needs_the_lease_and_happens_once() -> None:
    w = world(img={"status": "review"})
    job_id = leased(w, "scanner", "img")
    with pytest.raises(DomainError) as refused:
        decisions.decide(w.ports, SETTINGS, job_id, BOB, "clear", "no_violation")
    assert refused.value.code == "leased_elsewhere"
    assert w.images.docs["img"]["status"] == "review" and not w.rec.audits()
    decisions.decide(w.ports, SETTINGS, job_id, ALICE, "clear", "no_violation")
    with pytest.raises(DomainError) as again:
        decisions.decide(w.ports, SETTINGS, job_id, ALICE, "remove", "spam")
    assert again.value.code == "job_settled"


def test_a_failed_effect_reopens_the_job() -> None:
    w = world(img={"status": "cleared"})
    job_id = leased(w, "reports", "img")

    def broken(image_id: str, removal: Doc) -> bool:
        raise ConnectionError("database went away")

    w.images.take_down = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        decisions.decide(w.ports, SETTINGS, job_id, ALICE, "remove", "spam")
    assert w.jobs.docs[job_id]["state"] == "open" and not w.rec.audits()


def test_remove_ban_refuses_degenerate_hashes_before_changing_anything() -> None:
    verdict = {"hashes": {"phash": "0" * 16, "dhash": "0" * 16, "hashable": False}}
    w = world(img={"status": "cleared", "verdict": verdict})
    job_id = leased(w, "reports", "img")
    with pytest.raises(DomainError) as refused:
        decisions.decide(w.ports, SETTINGS, job_id, ALICE, "remove_ban", "spam", bank="b")
    assert refused.value.code == "not_hashable"
    assert w.images.docs["img"]["status"] == "cleared" and w.jobs.docs[job_id]["state"] == "open"


def test_escalate_moves_the_job_to_admins_and_ends_the_lease() -> None:
    w = world(img={"status": "review"})
    job_id = leased(w, "scanner", "img")
    decisions.decide(w.ports, SETTINGS, job_id, ALICE, "escalate", "other", note="unsure")
    job = w.jobs.docs[job_id]
    assert job["queue"] == "escalated" and job["state"] == "open" and job["lease_owner"] is None
    assert job["escalation"]["from_queue"] == "scanner" and job["escalation"]["by"] == "alice"
    assert w.images.docs["img"]["status"] == "review"
    with pytest.raises(DomainError):
        jobs.lease_job(w.ports, job_id, ALICE, 300)
    decisions.decide(w.ports, SETTINGS, job_id, ADMIN, "remove", "violence")
    assert w.images.docs["img"]["status"] == "removed"
    assert [a["action"] for a in w.rec.audits()] == ["review.escalate", "review.remove"]


def test_overturn_restores_the_image_and_its_links() -> None:
    w = world(img={"status": "removed", "removal": {"reason": "review:spam"}})
    job_id = leased(w, "appeals", "img")
    with pytest.raises(DomainError) as wrong:
        decisions.decide(w.ports, SETTINGS, job_id, ALICE, "clear", "no_violation")
    assert wrong.value.code == "invalid_action"
    decisions.decide(w.ports, SETTINGS, job_id, ALICE, "overturn", "no_violation")
    assert w.images.docs["img"]["status"] == "cleared"
    assert ("restore_links", "img") in w.rec.calls


def test_a_decision_on_an_image_that_moved_on_is_refused() -> None:
    w = world(img={"status": "deleted"})
    job_id = leased(w, "reports", "img")
    with pytest.raises(DomainError) as refused:
        decisions.decide(w.ports, SETTINGS, job_id, ALICE, "clear", "no_violation")
    assert refused.value.code == "image_changed" and refused.value.status == 409
    assert w.jobs.docs[job_id]["state"] == "open"


# --- intake ----------------------------------------------------------------------------------


def test_held_images_get_one_scanner_job_and_moot_jobs_close() -> None:
    w = world(
        held={"status": "review", "verdict": {"reasons": ["nsfw:review"]}},
        hidden={"status": "review"},
        gone={"status": "deleted"},
    )
    w.jobs._make("reports", "hidden", 1, ago(10))  # auto-hidden: its reports job covers it
    w.jobs._make("reports", "gone", 1, ago(10))
    first = intake.sync_once(w.ports)
    assert first == intake.SyncResult(opened=1, closed=1)
    assert intake.sync_once(w.ports) == intake.SyncResult(opened=0, closed=0)
    scanner = [d for d in w.jobs.docs.values() if d["kind"] == "scanner"]
    assert [(d["image_id"], d["verdict_reasons"]) for d in scanner] == [("held", ["nsfw:review"])]
    closed = [d for d in w.jobs.docs.values() if d["state"] == "closed"]
    assert [d["closed_reason"] for d in closed] == ["image_deleted"]


def test_queue_summary_and_ages() -> None:
    w = world()
    w.jobs._make("appeals", "a", 1, ago(125))
    summary = {q["queue"]: q for q in jobs.queue_summary(w.ports, ALICE)}
    assert summary["appeals"]["depth"] == 1 and summary["appeals"]["oldest_age_s"] >= 125
    assert summary["escalated"]["may_take"] is False
    assert jobs.human_age(42) == "42 s" and jobs.human_age(125) == "2 min"
    assert jobs.human_age(3 * 3600 + 5 * 60) == "3 h 05" and jobs.human_age(2 * 86400) == "2 d 0 h"
    assert summary["reports"]["depth"] == 0
