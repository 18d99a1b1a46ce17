"""Hash-bank entries. Plain functions over repositories."""

from __future__ import annotations

import re

from services.shared.errors import DomainError
from services.shared.repos import BankRepo, ImageRepo
from services.shared.tokens import new_id

SIGNAL_TYPES = {"phash": 16}  # signal type -> hex length
_HEX = re.compile(r"^[0-9a-f]+$")
_BANK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def hamming_hex(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def retroactive_takedown(
    *, images: ImageRepo, bank: str, entry_id: str, hash_value: str, max_distance: int
) -> list[str]:
    """A new bank entry also applies to what is already live: every visible image whose pHash
    is within ``max_distance`` is removed at once, and its links stop serving it."""
    removed = []
    for image_id, phash in images.live_phashes():
        distance = hamming_hex(phash, hash_value)
        if distance <= max_distance and images.take_down(
            image_id,
            {"reason": f"hash_match:{bank}", "entry_id": entry_id, "distance": distance},
        ):
            removed.append(image_id)
    return removed


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
