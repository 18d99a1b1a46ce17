"""Review jobs, from the reviewer's side: handing out the next job (leases), what a job shows,
and the actions a reviewer may take on it. Plain synchronous functions over the review ports;
routes call them in a worker thread. Decisions' effects live in ``decisions``; the intake of
held images in ``intake``.

Queues: ``reports`` (user reports, one job per image), ``scanner`` (images the scanner held),
``appeals`` (an uploader appeals a removal) and ``escalated`` (admins decide). Within a queue,
lower ``priority`` first (a minor-safety report is 0), then oldest first.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from services.review.ports import Ports
from services.shared import jobrepo
from services.shared.errors import Conflict, DomainError, Forbidden, NotFound
from services.shared.mongo import Doc
from services.shared.repos import now


class Actor(Protocol):
    """Who acts: the contract's ``auth.Reviewer`` has these."""

    @property
    def username(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


class Action(StrEnum):
    CLEAR = "clear"  # links may serve
    REMOVE = "remove"  # every link dies within seconds
    REMOVE_BAN = "remove_ban"  # remove + the image's hashes into a bank (retroactive takedown)
    ESCALATE = "escalate"  # to the admins' queue
    UPHOLD = "uphold"  # appeals: the removal stands
    OVERTURN = "overturn"  # appeals: the image is restored


# The fixed policy reasons, in the order of their keyboard shortcuts 1-8.
POLICY_REASONS: dict[str, str] = {
    "no_violation": "No violation",
    "sexual_content": "Sexual content",
    "minor_safety": "Minor safety",
    "non_consensual": "Non-consensual",
    "violence": "Violence",
    "harassment": "Harassment",
    "spam": "Spam",
    "other": "Other",
}
# Restoring actions cannot cite a violation; removing ones must.
_RESTORING = {Action.CLEAR, Action.OVERTURN}
_REMOVING = {Action.REMOVE, Action.REMOVE_BAN, Action.UPHOLD}
_CLEAN_REASONS = {"no_violation", "other"}

ACTIONS_BY_KIND: dict[str, tuple[Action, ...]] = {
    jobrepo.REPORTS: (Action.CLEAR, Action.REMOVE, Action.REMOVE_BAN, Action.ESCALATE),
    jobrepo.SCANNER: (Action.CLEAR, Action.REMOVE, Action.REMOVE_BAN, Action.ESCALATE),
    jobrepo.APPEALS: (Action.UPHOLD, Action.OVERTURN, Action.ESCALATE),
}
DEFAULT_BAN_BANK = "reviewed"
MAX_NOTE = 500
_CANDIDATES = 20  # leases tried per request before reporting the queue empty (all raced)


def actions_for(job: Doc) -> tuple[Action, ...]:
    actions = ACTIONS_BY_KIND.get(str(job.get("kind")), ())
    if job.get("queue") == jobrepo.ESCALATED:
        return tuple(a for a in actions if a is not Action.ESCALATE)
    return actions


def check_queue(queue: str, me: Actor) -> str:
    if queue not in jobrepo.QUEUES:
        raise NotFound(f"Unknown queue; use one of {list(jobrepo.QUEUES)}.", code="unknown_queue")
    if queue == jobrepo.ESCALATED and not me.is_admin:
        raise Forbidden("Only admins handle escalated jobs.", code="admin_only")
    return queue


def check_reason(action: Action, reason: str) -> str:
    if reason not in POLICY_REASONS:
        raise DomainError(
            f"Choose a policy reason: one of {list(POLICY_REASONS)}.", code="invalid_reason"
        )
    if action in _RESTORING and reason not in _CLEAN_REASONS:
        raise DomainError(
            f"'{action.value}' restores the image: the reason is no_violation or other.",
            code="reason_mismatch",
        )
    if action in _REMOVING and reason == "no_violation":
        raise DomainError(
            f"'{action.value}' needs the violation as its reason.", code="reason_mismatch"
        )
    return reason


def human_age(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3 h 05``, ``2 d 4 h``: for the pages."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d}"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _utc(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


# --- leases -----------------------------------------------------------------------------------


def lease_next(
    p: Ports, queue: str, me: Actor, lease_s: int, skip: Collection[str] = ()
) -> Doc | None:
    """Lease the next job of ``queue`` to ``me``: the one ``me`` already holds, else the first
    free one by (priority, age). Each attempt is one conditional update; a job another
    reviewer took a moment earlier is passed over. None when nothing is free."""
    check_queue(queue, me)
    at = now()
    until = at + timedelta(seconds=lease_s)
    held = p.jobs.held_by(me.username, queue, at)
    mine = str(held["_id"]) if held is not None and held["_id"] not in skip else None
    if mine and p.jobs.lease(mine, queue, me.username, until, at):
        return p.jobs.get(mine)
    for cand in p.jobs.candidates(queue, at, _CANDIDATES + len(skip)):
        job_id = str(cand["_id"])
        if job_id in skip:
            continue
        if p.jobs.lease(job_id, queue, me.username, until, at):
            return p.jobs.get(job_id)
    return None


def get_job(p: Ports, job_id: str) -> Doc:
    job = p.jobs.get(job_id)
    if job is None:
        raise NotFound("No job has this id.", code="job_not_found")
    return job


def lease_job(p: Ports, job_id: str, me: Actor, lease_s: int) -> Doc:
    """Take one particular job (opened from the queue list), if nobody else holds it."""
    job = get_job(p, job_id)
    check_queue(str(job["queue"]), me)
    if job["state"] != jobrepo.OPEN:
        raise Conflict("This job is already settled.", code="job_settled")
    at = now()
    if not p.jobs.lease(
        job_id, str(job["queue"]), me.username, at + timedelta(seconds=lease_s), at
    ):
        raise Conflict(
            "Another reviewer holds this job.",
            code="leased_elsewhere",
            leased_by=job.get("lease_owner"),
        )
    return get_job(p, job_id)


def release_job(p: Ports, job_id: str, me: Actor) -> bool:
    """Give a held job back (skip): it goes back to its place in the queue."""
    return p.jobs.release(job_id, me.username)


def lease_state(job: Doc, me: Actor, at: datetime) -> dict[str, Any]:
    until = _utc(job.get("lease_until"))
    owner = job.get("lease_owner")
    held = owner is not None and until is not None and until > at
    return {
        "held": held,
        "owner": owner if held else None,
        "until": until.isoformat() if held and until else None,
        "mine": held and owner == me.username,
    }


def check_may_decide(job: Doc, me: Actor, at: datetime) -> None:
    """Open, and leased to ``me`` (admins may decide any open job); escalated: admins only."""
    if job["state"] != jobrepo.OPEN:
        raise Conflict("This job is already settled.", code="job_settled")
    if job["queue"] == jobrepo.ESCALATED and not me.is_admin:
        raise Forbidden("Only admins decide escalated jobs.", code="admin_only")
    lease = lease_state(job, me, at)
    if me.is_admin or lease["mine"]:
        return
    if lease["held"]:
        raise Conflict(
            "Another reviewer holds this job.", code="leased_elsewhere", leased_by=lease["owner"]
        )
    raise Conflict("Take the job before deciding it (its lease ended).", code="lease_required")


# --- the job view -----------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    dt = _utc(value)
    return dt.isoformat() if dt else None


def _verdict(image: Doc) -> dict[str, Any]:
    v = image.get("verdict") or {}
    hashes = v.get("hashes") or {}
    return {
        "verdict": v.get("verdict"),
        "reasons": list(v.get("reasons") or []),
        "nsfw_score": v.get("nsfw_score"),
        "scores": dict(v.get("scores") or {}),
        "match": v.get("match"),
        "hashes": {k: hashes.get(k) for k in ("phash", "dhash", "pdq") if hashes.get(k)},
        "hashable": bool(hashes.get("hashable")),
        "pdq_quality": hashes.get("pdq_quality"),
    }


def job_view(p: Ports, job_id: str, me: Actor) -> dict[str, Any]:
    """What a reviewer sees of one job: the image's scan (scores, reasons, bank match), its
    reports (counts by reason, distinct reporters, texts), appeal, upload time, link count."""
    job = get_job(p, job_id)
    at = now()
    image = p.images.get(str(job["image_id"])) or {}
    total_links, live_links = p.links.count_for_image(str(job["image_id"]), at)
    reports = p.reports.for_image(str(job["image_id"])) if job["kind"] == jobrepo.REPORTS else []
    removal = image.get("removal") or {}
    return {
        "job_id": str(job["_id"]),
        "queue": job["queue"],
        "kind": job["kind"],
        "state": job["state"],
        "priority": job.get("priority", jobrepo.DEFAULT_PRIORITY),
        "created_at": _iso(job.get("created_at")),
        "age_s": max(0.0, (at - job["created_at"]).total_seconds()),
        "lease": lease_state(job, me, at),
        "actions": [a.value for a in actions_for(job)] if job["state"] == jobrepo.OPEN else [],
        "may_decide": _may_decide(job, me, at),
        "decision": job.get("decision"),
        "escalation": job.get("escalation"),
        "image": {
            "image_id": str(job["image_id"]),
            "status": image.get("status", "gone"),
            "uploaded_at": _iso(image.get("created_at")),
            "content_type": image.get("content_type"),
            "size": image.get("size"),
            "width": image.get("width"),
            "height": image.get("height"),
            "hidden_by": image.get("hidden_by"),
            "removal": {"reason": removal.get("reason"), "at": _iso(removal.get("at"))}
            if removal
            else None,
            "preview": bool(image.get("blob_id")),
            "links": total_links,
            "live_links": live_links,
        },
        "verdict": _verdict(image),
        "reports": {
            "count": int(job.get("reports", 0)),
            "reporters": len(job.get("reporters") or []),
            "reasons": dict(job.get("reasons") or {}),
            "auto_hidden": bool(job.get("auto_hidden")),
            "first_at": _iso(job.get("created_at")) if job["kind"] == jobrepo.REPORTS else None,
            "last_at": _iso(job.get("last_report_at")),
            "texts": [
                {
                    "reason": r.get("reason"),
                    "details": r.get("details"),
                    "at": _iso(r.get("created_at")),
                }
                for r in reports
                if r.get("details")
            ],
        },
        "appeal": job.get("appeal"),
    }


def _may_decide(job: Doc, me: Actor, at: datetime) -> bool:
    try:
        check_may_decide(job, me, at)
    except DomainError:
        return False
    return True


def queue_summary(p: Ports, me: Actor) -> list[dict[str, Any]]:
    """Depth and oldest age of every queue (escalated is visible to all, handled by admins)."""
    at = now()
    out = []
    for queue in jobrepo.QUEUES:
        depth, oldest = p.jobs.depth(queue)
        out.append(
            {
                "queue": queue,
                "depth": depth,
                "oldest_age_s": max(0.0, (at - oldest).total_seconds()) if oldest else 0.0,
                "admin_only": queue == jobrepo.ESCALATED,
                "may_take": queue != jobrepo.ESCALATED or me.is_admin,
            }
        )
    return out


def queue_listing(p: Ports, queue: str, me: Actor, limit: int = 25) -> list[dict[str, Any]]:
    """The next jobs of a queue in hand-out order, with who holds them."""
    at = now()
    return [
        {
            "job_id": str(j["_id"]),
            "image_id": str(j["image_id"]),
            "priority": j.get("priority", jobrepo.DEFAULT_PRIORITY),
            "age_s": max(0.0, (at - j["created_at"]).total_seconds()),
            "reports": int(j.get("reports", 0)),
            "reasons": dict(j.get("reasons") or {}),
            "lease": lease_state(j, me, at),
        }
        for j in p.jobs.recent(queue, limit)
    ]
