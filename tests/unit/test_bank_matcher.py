"""The scanner's bank index with an in-memory twin of the bank repository: built once, then
kept current from the change feed (no rebuild), per-bank thresholds and PDQ quality honoured."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.scanner.banks import BankMatcher
from services.scanner.hashing import ImageSignals

ZERO64 = "0" * 16
ZERO256 = "0" * 64


@dataclass
class MemoryBanks:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    feed: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    gen: int = 0
    full_reads: int = 0

    def add(self, entry_id: str, signal: str, hash_hex: str, bank: str = "b") -> None:
        doc = {
            "_id": entry_id,
            "signal_type": signal,
            "hash": hash_hex,
            "bank": bank,
            "reason": "r",
        }
        self.docs[entry_id] = doc
        self.feed.append({"action": "added", "entries": [doc], "at": datetime.now(UTC)})
        self.gen += 1

    def remove(self, entry_id: str) -> None:
        self.docs.pop(entry_id)
        self.feed.append(
            {"action": "removed", "entries": [{"_id": entry_id}], "at": datetime.now(UTC)}
        )
        self.gen += 1

    def generation(self) -> int:
        return self.gen

    def entries(self, signal_type: str | None = None) -> list[dict[str, Any]]:
        self.full_reads += 1
        return list(self.docs.values())

    def changes_since(self, since: datetime) -> list[dict[str, Any]]:
        return [c for c in self.feed if c["at"] >= since]

    def all_settings(self) -> list[dict[str, Any]]:
        return [{"_id": k, **v} for k, v in self.settings.items()]


def signals(
    phash: str = "f" * 16, dhash: str = "f" * 16, pdq: str = "f" * 64, quality: int = 100
) -> ImageSignals:
    return ImageSignals(phash, dhash, pdq, quality, True)


def flip(hex_value: str, bits: int) -> str:
    width = len(hex_value) * 4
    return f"{int(hex_value, 16) ^ ((1 << bits) - 1):0{width // 4}x}"


def test_entries_added_and_removed_apply_without_rebuilding() -> None:
    repo = MemoryBanks()
    matcher = BankMatcher(repo)  # type: ignore[arg-type]
    matcher.refresh()
    assert matcher.match(signals(phash=ZERO64)) is None
    repo.add("e1", "phash", ZERO64)
    matcher.refresh()
    found = matcher.match(signals(phash=flip(ZERO64, 3)))
    assert found is not None and found[0] == "phash" and found[1].entry_id == "e1"
    assert found[1].distance == 3
    repo.remove("e1")
    matcher.refresh()
    assert matcher.match(signals(phash=ZERO64)) is None
    assert repo.full_reads == 1  # built once; every later change came from the feed


def test_per_bank_thresholds_and_pdq_quality() -> None:
    repo = MemoryBanks()
    repo.add("strict", "phash", ZERO64, bank="strict")
    repo.add("p", "pdq", ZERO256, bank="industry")
    repo.settings["strict"] = {"thresholds": {"phash": 2}}
    repo.settings["industry"] = {"thresholds": {"pdq": 31}, "pdq_min_quality": 80}
    matcher = BankMatcher(repo)  # type: ignore[arg-type]
    matcher.refresh()
    assert matcher.match(signals(phash=flip(ZERO64, 2))) is not None
    assert matcher.match(signals(phash=flip(ZERO64, 3))) is None  # beyond this bank's 2 bits
    near = flip(ZERO256, 30)
    assert matcher.match(signals(pdq=near, quality=90)) is not None
    assert matcher.match(signals(pdq=near, quality=60)) is None  # below the bank's minimum
    assert matcher.match(signals(pdq=flip(ZERO256, 32), quality=90)) is None


def test_a_change_seen_twice_is_applied_once() -> None:
    repo = MemoryBanks()
    matcher = BankMatcher(repo)  # type: ignore[arg-type]
    matcher.refresh()
    repo.add("e1", "dhash", ZERO64)
    repo.feed.append(dict(repo.feed[-1], at=repo.feed[-1]["at"] - timedelta(seconds=1)))
    repo.gen += 1
    matcher.refresh()
    assert len(matcher) == 1
    assert matcher.match(signals(dhash=ZERO64)) is not None
