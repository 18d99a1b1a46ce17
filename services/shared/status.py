"""The one status enum access is decided from. Anything not CLEARED is denied."""

from __future__ import annotations

from enum import StrEnum


class ImageStatus(StrEnum):
    PENDING = "pending"  # stored, waiting for the scanner
    CLEARED = "cleared"  # scanner (or a reviewer) says it may be shown
    REVIEW = "review"  # held for a human decision
    BLOCKED = "blocked"  # scanner refused it (model or hash bank)
    REMOVED = "removed"  # taken down by moderation after the fact
    EXPIRED = "expired"  # every link ended (or none was made in time): bytes deleted
    DELETED = "deleted"  # the owner deleted it everywhere: bytes deleted


def may_serve(status: str | None) -> bool:
    """Fail closed: only an explicit, known CLEARED status allows bytes to be served."""
    return status == ImageStatus.CLEARED.value


class Verdict(StrEnum):
    CLEARED = "cleared"
    REVIEW = "review"
    BLOCKED = "blocked"
