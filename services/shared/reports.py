"""User reports, filed wherever people see images (share pages today; rooms and the gallery
later) and handled in the review console. The reporter is known only by a salted hash."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.shared.errors import DomainError, NotFound
from services.shared.jobrepo import JobRepo
from services.shared.linkrepo import LinkRepo
from services.shared.repos import ImageRepo, ReportRepo, now
from services.shared.status import ImageStatus
from services.shared.tokens import new_id, token_hash


class ReportReason(StrEnum):
    SEXUAL_CONTENT = "sexual_content"
    MINOR_SAFETY = "minor_safety"
    NON_CONSENSUAL = "non_consensual"
    VIOLENCE = "violence"
    HARASSMENT = "harassment"
    SPAM = "spam"
    OTHER = "other"


# What a reporter reads for each reason, in the order forms offer them.
REASON_LABELS: dict[ReportReason, str] = {
    ReportReason.SEXUAL_CONTENT: "Sexual content",
    ReportReason.MINOR_SAFETY: "Child safety",
    ReportReason.NON_CONSENSUAL: "Shared without consent",
    ReportReason.VIOLENCE: "Violence",
    ReportReason.HARASSMENT: "Harassment",
    ReportReason.SPAM: "Spam",
    ReportReason.OTHER: "Other",
}


MAX_DETAILS = 1000
_REVIEWABLE = {ImageStatus.CLEARED.value, ImageStatus.REVIEW.value}


@dataclass(frozen=True)
class FiledReport:
    report_id: str
    job_id: str | None  # the reports job it joined (None: the image is past reviewing)
    auto_hidden: bool  # this report made the image hidden pending review


def file_report(
    *,
    reports: ReportRepo,
    images: ImageRepo,
    links: LinkRepo,
    salt: bytes,
    reason: ReportReason,
    details: str,
    reporter: str,
    image_id: str | None = None,
    link_token: str | None = None,
    jobs: JobRepo | None = None,
    auto_hide_reporters: int = 0,
) -> FiledReport:
    """Store an open report; ``reporter`` is a salted client hash, never an address.

    With ``jobs``, the report also joins the image's one open reports job (distinct reporters
    counted by their hashes; a minor-safety report puts the job first). Once
    ``auto_hide_reporters`` distinct reporters (0 = never) reported a cleared image, it is held
    for review at once: every link answers 451 until a reviewer decides."""
    if link_token:
        link = links.get(token_hash(salt, link_token))
        if link is None:
            raise NotFound("No link matches this report.", code="link_not_found")
        if image_id and image_id != link["image_id"]:
            raise DomainError("The image and the link do not match.", code="target_mismatch")
        image_id = str(link["image_id"])
    if not image_id:
        raise DomainError("Say which image: image_id or link_token.", code="missing_target")
    image = images.get(image_id)
    if image is None:
        raise NotFound("No image matches this report.", code="image_not_found")
    report_id = new_id()
    priority = 0 if reason is ReportReason.MINOR_SAFETY else 1
    reports.insert(
        {
            "_id": report_id,
            "image_id": image_id,
            "reason": reason.value,
            "details": details[:MAX_DETAILS],
            "reporter": reporter,
            "priority": priority,
        }
    )
    if jobs is None or image.get("status") not in _REVIEWABLE:
        return FiledReport(report_id, None, False)  # nothing a reviewer could still change
    job = jobs.add_report(image_id, reporter, reason.value, priority)
    hidden = False
    distinct = len(job.get("reporters") or [])
    if 0 < auto_hide_reporters <= distinct and images.hide(image_id, "reports"):
        jobs.mark(str(job["_id"]), {"auto_hidden": True, "auto_hidden_at": now()})
        hidden = True
    return FiledReport(report_id, str(job["_id"]), hidden)
