"""A reviewer's decision on a job and its effects downstream.

- clear: the held image is cleared (``cleared_at`` starts the sweeper's unlinked timer);
  its links serve again.
- remove: the image is taken down; ``image.takedown`` ends every link within seconds (and the
  links service refuses the image from its status at once, 451).
- remove_ban: remove, then each of the image's hashes goes into the chosen bank through the
  bank path (``banning.add_entry``): scanners block copies, live copies are taken down.
- escalate: the job moves to the admins' queue.
- uphold / overturn (appeals): the removal stands / the image is restored with the links the
  takedown ended. A removed image whose bytes were purged after the appeal window (or are being
  purged: ``services.review.evidence.purge_removed``) cannot be restored: 409 ``image_purged``.

Order: every check first; then the job is settled with one conditional update (the lease is
the serialisation point: two decisions of one job cannot both win); then the effects. Should
an effect fail, the job is reopened, so nothing is decided without its effect. Every decision
is audited (actor, action, image, policy reason) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.review import announce, banning, domain, metrics
from services.review.jobs import (
    DEFAULT_BAN_BANK,
    MAX_NOTE,
    POLICY_REASONS,
    Action,
    Actor,
    actions_for,
    check_may_decide,
    check_reason,
    get_job,
    lease_next,
)
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared import jobrepo
from services.shared.errors import Conflict, DomainError
from services.shared.mongo import Doc
from services.shared.repos import now
from services.shared.status import ImageStatus

BAN_SIGNALS = ("phash", "dhash", "pdq")


@dataclass(frozen=True)
class Decided:
    job_id: str
    action: str
    image_id: str
    next_job_id: str | None
    bank_entries: list[str] = field(default_factory=list)
    taken_down: list[str] = field(default_factory=list)  # other live copies a ban removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "decided": self.job_id,
            "action": self.action,
            "image_id": self.image_id,
            "next_job_id": self.next_job_id,
            "bank_entries": self.bank_entries,
            "taken_down": self.taken_down,
        }


def _ban_hashes(image: Doc, p: Ports, bank: str) -> list[tuple[str, str]]:
    """(signal type, hash) of the image worth banning; refuses degenerate hashes."""
    hashes = (image.get("verdict") or {}).get("hashes") or {}
    if not hashes.get("hashable"):
        raise Conflict(
            "This image's hashes are degenerate (tiny or flat): banning them would hit "
            "unrelated images. Remove it without a ban.",
            code="not_hashable",
        )
    min_quality = domain.get_bank_settings(banks=p.banks, bank=bank).pdq_min_quality
    out = []
    for signal in BAN_SIGNALS:
        value = hashes.get(signal)
        if not isinstance(value, str) or not value:
            continue
        if signal == "pdq" and int(hashes.get("pdq_quality") or 0) < min_quality:
            continue
        out.append((signal, value))
    if not out:
        raise Conflict("This image has no hashes to ban.", code="no_hashes")
    return out


_NEEDS_STATUS = {
    Action.CLEAR: (ImageStatus.REVIEW, ImageStatus.CLEARED),
    Action.REMOVE: (ImageStatus.REVIEW, ImageStatus.CLEARED, ImageStatus.REMOVED),
    Action.REMOVE_BAN: (ImageStatus.REVIEW, ImageStatus.CLEARED, ImageStatus.REMOVED),
    Action.UPHOLD: (ImageStatus.REMOVED,),
    Action.OVERTURN: (ImageStatus.REMOVED, ImageStatus.CLEARED),
}


def _check_image(action: Action, image: Doc | None) -> Doc:
    status = (image or {}).get("status", "gone")
    allowed = _NEEDS_STATUS.get(action)
    if image is None or (allowed is not None and status not in {s.value for s in allowed}):
        raise Conflict(
            f"The image is {status} now; '{action.value}' no longer applies. "
            "The job will be closed shortly.",
            code="image_changed",
            image_status=status,
        )
    return image


def _check_restorable(image: Doc) -> None:
    """An overturn needs the bytes: refuse once their purge has started."""
    if image.get("purged_at") is not None or image.get("purge_started_at") is not None:
        raise Conflict(
            "This photo's appeal window ended and its bytes are deleted (or being deleted); "
            "it cannot be restored. Uphold the removal instead.",
            code="image_purged",
            purged_at=_iso(image.get("purged_at") or image.get("purge_started_at")),
        )


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _effects(
    p: Ports,
    settings: ReviewSettings,
    job: Doc,
    image: Doc,
    action: Action,
    record: Doc,
    bank: str,
    actor: str,
) -> tuple[list[str], list[str]]:
    """Apply the decision to the image (idempotent: an image already in the target state is
    fine). Returns (bank entry ids, other images taken down by the ban)."""
    image_id = str(job["image_id"])
    if action is Action.CLEAR and image["status"] == ImageStatus.REVIEW.value:
        if not p.images.clear(image_id, ImageStatus.REVIEW, record):
            _raced(p, image_id, ImageStatus.CLEARED)
    elif action is Action.OVERTURN:
        removed = image["status"] == ImageStatus.REMOVED.value
        if removed and not p.images.restore_removed(image_id, record):
            _check_restorable(p.images.get(image_id) or {})  # a purge claimed it meanwhile
            _raced(p, image_id, ImageStatus.CLEARED)
        p.links.restore_removed(image_id)
    elif action in (Action.REMOVE, Action.REMOVE_BAN):
        removal = {"reason": f"review:{record['reason']}", "by": actor, "job_id": job["_id"]}
        if p.images.take_down(image_id, removal):
            announce.taken_down(p.publisher, [image_id], removal["reason"])
        else:
            _raced(p, image_id, ImageStatus.REMOVED)
    if action is not Action.REMOVE_BAN:
        return [], []
    entries: list[str] = []
    taken_down: list[str] = []
    for signal, value in _ban_hashes(image, p, bank):
        added = banning.add_entry(
            p,
            settings,
            bank=bank,
            signal_type=signal,
            hash_value=value,
            reason=f"{POLICY_REASONS[record['reason']]} (review job {job['_id']})",
            source=f"review:{job['_id']}",
            actor=actor,
        )
        entries.append(added.entry_id)
        taken_down += [i for i in added.taken_down if i not in taken_down]
    return entries, taken_down


def _raced(p: Ports, image_id: str, wanted: ImageStatus) -> None:
    """The conditional update changed nothing: fine if the image is already where we want it."""
    status = (p.images.get(image_id) or {}).get("status", "gone")
    if status != wanted.value:
        raise Conflict(
            f"The image became {status} meanwhile; nothing was changed.",
            code="image_changed",
            image_status=status,
        )


def decide(
    p: Ports,
    settings: ReviewSettings,
    job_id: str,
    me: Actor,
    action: str,
    reason: str,
    bank: str | None = None,
    note: str = "",
) -> Decided:
    """Decide a job (see the module docstring), then lease the next job of the same queue to
    the reviewer ("Submit & next")."""
    job = get_job(p, job_id)
    at = now()
    check_may_decide(job, me, at)
    try:
        chosen = Action(action)
    except ValueError:
        chosen = None
    if chosen is None or chosen not in actions_for(job):
        allowed = [a.value for a in actions_for(job)]
        raise DomainError(f"This job takes one of {allowed}.", code="invalid_action")
    check_reason(chosen, reason)
    ban_bank = domain.check_bank((bank or DEFAULT_BAN_BANK).strip().lower())
    image_id = str(job["image_id"])
    image: Doc = {}
    if chosen is not Action.ESCALATE:
        image = _check_image(chosen, p.images.get(image_id))
        if chosen is Action.OVERTURN:
            _check_restorable(image)
        if chosen is Action.REMOVE_BAN:
            _ban_hashes(image, p, ban_bank)  # refuse before anything changes
    record: Doc = {
        "action": chosen.value,
        "reason": reason,
        "by": me.username,
        "at": at,
        "note": note.strip()[:MAX_NOTE],
    }
    if chosen is Action.REMOVE_BAN:
        record["bank"] = ban_bank
    queue = str(job["queue"])
    owner = None if me.is_admin else me.username
    holder = job.get("lease_owner")
    until = job.get("lease_until")
    if me.is_admin and holder not in (None, me.username) and until is not None and until > at:
        record["overrode_lease"] = holder  # admins may decide a held job; it is on record
    if chosen is Action.ESCALATE:
        escalation = {
            "by": me.username,
            "reason": reason,
            "note": record["note"],
            "at": at,
            "from_queue": queue,
        }
        if not p.jobs.escalate(job, escalation, owner, at):
            raise Conflict("The job changed meanwhile; reload it.", code="job_changed")
        entries: list[str] = []
        taken: list[str] = []
    else:
        if not p.jobs.settle(job, jobrepo.DECIDED, {"decision": record}, owner, at):
            raise Conflict("The job changed meanwhile; reload it.", code="job_changed")
        try:
            entries, taken = _effects(
                p, settings, job, image, chosen, record, ban_bank, me.username
            )
        except BaseException:
            p.jobs.reopen(job)
            raise
        if entries:
            p.jobs.mark(job_id, {"decision.bank_entries": entries})
        _close_others(p, image_id, job_id)
        p.reports.settle_for_image(image_id, job_id)
    _audit_and_count(p, job, chosen, record, entries, taken)
    nxt = lease_next(p, queue, me, settings.review_lease_s, skip={job_id})
    return Decided(job_id, chosen.value, image_id, str(nxt["_id"]) if nxt else None, entries, taken)


def _close_others(p: Ports, image_id: str, job_id: str) -> None:
    for other in p.jobs.open_for_image(image_id):
        if other["_id"] != job_id and p.jobs.close(other, f"decided_in:{job_id}"):
            metrics.JOBS_CLOSED.labels("decided_elsewhere").inc()


def _audit_and_count(
    p: Ports, job: Doc, action: Action, record: Doc, entries: list[str], taken: list[str]
) -> None:
    extra: dict[str, Any] = {"job_id": job["_id"], "queue": job["queue"], "kind": job["kind"]}
    if record.get("note"):
        extra["note"] = record["note"]
    if record.get("overrode_lease"):
        extra["overrode_lease"] = record["overrode_lease"]
    if action is Action.REMOVE_BAN:
        extra.update(bank=record["bank"], bank_entries=entries, taken_down=taken)
    p.audit.record(
        f"review.{action.value}", record["by"], str(job["image_id"]), record["reason"], **extra
    )
    metrics.DECISIONS.labels(action.value).inc()
    if action is Action.OVERTURN:
        metrics.APPEALS_OVERTURNED.inc()
    if job["kind"] == jobrepo.REPORTS and action is not Action.ESCALATE:
        metrics.REPORT_TO_DECISION.observe(
            max(0.0, (record["at"] - job["created_at"]).total_seconds())
        )
