"""User reports, filed wherever people see images (share pages today; rooms and the gallery
later) and handled in the review console. The reporter is known only by a salted hash."""

from __future__ import annotations

from enum import StrEnum

from services.shared.errors import DomainError, NotFound
from services.shared.linkrepo import LinkRepo
from services.shared.repos import ImageRepo, ReportRepo
from services.shared.tokens import new_id, token_hash


class ReportReason(StrEnum):
    SEXUAL_CONTENT = "sexual_content"
    MINOR_SAFETY = "minor_safety"
    NON_CONSENSUAL = "non_consensual"
    VIOLENCE = "violence"
    HARASSMENT = "harassment"
    SPAM = "spam"
    OTHER = "other"


MAX_DETAILS = 1000


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
) -> str:
    """Store an open report; ``reporter`` is a salted client hash, never an address."""
    if link_token:
        link = links.get(token_hash(salt, link_token))
        if link is None:
            raise NotFound("No link matches this report.", code="link_not_found")
        if image_id and image_id != link["image_id"]:
            raise DomainError("The image and the link do not match.", code="target_mismatch")
        image_id = str(link["image_id"])
    if not image_id:
        raise DomainError("Say which image: image_id or link_token.", code="missing_target")
    if images.get(image_id) is None:
        raise NotFound("No image matches this report.", code="image_not_found")
    report_id = new_id()
    reports.insert(
        {
            "_id": report_id,
            "image_id": image_id,
            "reason": reason.value,
            "details": details[:MAX_DETAILS],
            "reporter": reporter,
            "priority": 0 if reason is ReportReason.MINOR_SAFETY else 1,
        }
    )
    return report_id
