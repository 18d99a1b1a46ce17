"""Reports and hash-bank entries. Plain functions over repositories."""

from __future__ import annotations

import re
from enum import StrEnum

from services.shared.errors import DomainError, NotFound
from services.shared.repos import BankRepo, ImageRepo, LinkRepo, ReportRepo
from services.shared.tokens import new_id, token_hash


class ReportReason(StrEnum):
    SEXUAL_CONTENT = "sexual_content"
    MINOR_SAFETY = "minor_safety"
    NON_CONSENSUAL = "non_consensual"
    VIOLENCE = "violence"
    HARASSMENT = "harassment"
    SPAM = "spam"
    OTHER = "other"


SIGNAL_TYPES = {"phash": 16}  # signal type -> hex length
_HEX = re.compile(r"^[0-9a-f]+$")
_BANK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def file_report(
    *,
    reports: ReportRepo,
    images: ImageRepo,
    links: LinkRepo,
    salt: bytes,
    reason: ReportReason,
    details: str,
    image_id: str | None = None,
    link_token: str | None = None,
) -> str:
    if link_token:
        link = links.get(token_hash(salt, link_token))
        if link is None:
            raise NotFound("No link matches this report.", code="link_not_found")
        image_id = str(link["image_id"])
    if not image_id or images.get(image_id) is None:
        raise NotFound("No image matches this report.", code="image_not_found")
    report_id = new_id()
    reports.insert(
        {
            "_id": report_id,
            "image_id": image_id,
            "reason": reason.value,
            "details": details[:1000],
            "priority": 0 if reason is ReportReason.MINOR_SAFETY else 1,
        }
    )
    return report_id


def add_bank_entry(
    *, banks: BankRepo, bank: str, signal_type: str, hash_value: str, reason: str, source: str
) -> str:
    if not _BANK.match(bank):
        raise DomainError(
            "Bank names are lowercase letters, digits, '-' or '_' (up to 64).", code="invalid_bank"
        )
    length = SIGNAL_TYPES.get(signal_type)
    if length is None:
        raise DomainError(
            f"Unknown signal type; use one of {sorted(SIGNAL_TYPES)}.",
            code="unsupported_signal_type",
        )
    value = hash_value.strip().lower()
    if len(value) != length or not _HEX.match(value):
        raise DomainError(
            f"A {signal_type} hash is {length} hexadecimal characters.", code="invalid_hash"
        )
    entry_id = new_id()
    banks.add(
        {
            "_id": entry_id,
            "bank": bank,
            "signal_type": signal_type,
            "hash": value,
            "reason": reason[:500],
            "source": source[:200],
        }
    )
    return entry_id
