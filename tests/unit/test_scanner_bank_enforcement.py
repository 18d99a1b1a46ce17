"""chatpic_scanner_bank_change_enforced_seconds: each bank change is observed once per process,
with the delay from its writing to this scanner enforcing it. The change feed is re-read with
an overlap (correctness), so a change read again must not be observed again: a CSV import at
17:12:33 and an entry at 17:23 once recorded ~668 s and fired ChatPicBankEnforcementSlow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.scanner import banks
from services.scanner.banks import OVERLAP, BankMatcher
from services.scanner.hashing import ImageSignals

METRIC = "chatpic_scanner_bank_change_enforced_seconds"
T0 = datetime(2024, 5, 1, 17, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class FeedRepo:
    """The BankRepo methods the matcher uses; every change has its own id, as in Mongo."""

    clock: Clock
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    feed: list[dict[str, Any]] = field(default_factory=list)
    gen: int = 0

    def add(self, *entry_ids: str, at: datetime | None = None) -> None:
        added = []
        for entry_id in entry_ids:
            doc = {"_id": entry_id, "signal_type": "phash", "hash": "0" * 16, "bank": "b"}
            self.docs[entry_id] = doc
            added.append(doc)
        change_at = at or self.clock()
        self.feed.append(
            {"_id": f"c{len(self.feed)}", "action": "added", "entries": added, "at": change_at}
        )
        self.gen += 1

    def generation(self) -> int:
        return self.gen

    def entries(self, signal_type: str | None = None) -> list[dict[str, Any]]:
        return list(self.docs.values())

    def changes_since(self, since: datetime) -> list[dict[str, Any]]:
        return sorted((c for c in self.feed if c["at"] >= since), key=lambda c: c["at"])

    def all_settings(self) -> list[dict[str, Any]]:
        return []


def _sample(suffix: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(METRIC + suffix, labels) or 0.0


class Observed:
    def __init__(self) -> None:
        self.count0, self.sum0 = _sample("_count"), _sample("_sum")
        self.fast0 = _sample("_bucket", le="1.0")

    @property
    def count(self) -> float:
        return _sample("_count") - self.count0

    @property
    def total(self) -> float:
        return _sample("_sum") - self.sum0

    @property
    def fast(self) -> float:  # observations of at most one second
        return _sample("_bucket", le="1.0") - self.fast0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(banks, "now", c)
    return c


def test_two_changes_far_apart_are_observed_once_each_and_small(clock: Clock) -> None:
    repo = FeedRepo(clock)
    matcher = BankMatcher(repo)  # type: ignore[arg-type]
    matcher.refresh()  # built at 17:12:00
    seen = Observed()
    clock.advance(33)
    repo.add(*(f"csv{i}" for i in range(50)))  # the CSV import, 17:12:33
    clock.advance(0.4)
    matcher.refresh()
    assert (seen.count, seen.fast) == (1, 1)
    clock.advance(627)
    repo.add("single")  # one entry, 17:23
    clock.advance(0.3)
    matcher.refresh()  # re-reads from 5 s before the import: the import is applied, not observed
    assert len(matcher) == 51
    assert seen.count == 2 and seen.fast == 2, (seen.count, seen.total)
    assert seen.total == pytest.approx(0.7)


def test_changes_within_the_overlap_are_observed_once_and_late_commits_still_count(
    clock: Clock,
) -> None:
    repo = FeedRepo(clock)
    matcher = BankMatcher(repo)  # type: ignore[arg-type]
    matcher.refresh()
    seen = Observed()
    for i in range(4):  # each refresh re-reads the earlier changes (all within OVERLAP)
        clock.advance(1)
        repo.add(f"e{i}")
        clock.advance(0.1)
        matcher.refresh()
    assert seen.count == 4 and seen.total == pytest.approx(0.4)
    # Another writer commits a change stamped before the newest one seen: applied and observed.
    repo.add("late", at=clock() - timedelta(seconds=2))
    clock.advance(0.1)
    matcher.refresh()
    assert matcher.match(ImageSignals("0" * 16, "f" * 16, "f" * 64, 100, True)) is not None
    assert len(matcher) == 5
    assert seen.count == 5 and seen.total == pytest.approx(0.4 + 2.1)
    # Long after, a new change: nothing old is observed again, and the remembered ids are few.
    clock.advance(3600)
    repo.add("hour-later")
    matcher.refresh()
    assert seen.count == 6 and seen.total == pytest.approx(2.5)
    assert len(matcher._seen) == 1


def test_a_change_written_before_the_build_is_not_observed(clock: Clock) -> None:
    repo = FeedRepo(clock)
    repo.add("before")  # in the feed and in the entries the build reads
    clock.advance(OVERLAP.total_seconds() / 2)
    matcher = BankMatcher(repo)  # type: ignore[arg-type]
    matcher.refresh()
    seen = Observed()
    clock.advance(600)
    repo.add("after")
    matcher.refresh()  # re-reads "before" (within the overlap of the build time)
    assert len(matcher) == 2
    assert seen.count == 1 and seen.total == pytest.approx(0.0)
