"""This process's bank index: one exact multi-index table per 64-bit signal (pHash, dHash) and
an exact 256-bit index for PDQ, each bank with its own thresholds. Built once at start, then
kept current by applying the bank change feed (additions and removals are applied in place,
never by rebuilding the 64-bit tables); one cheap generation read per scan tells it to look."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from services.scanner import metrics
from services.scanner.hashing import (
    DEFAULT_THRESHOLDS,
    PDQ_MIN_QUALITY,
    BankEntry,
    HashMatch,
    ImageSignals,
    WideHashIndex,
)
from services.scanner.mih import MultiIndexHashIndex
from services.shared.repos import BankRepo, now

# Changes are re-read with this overlap: writers in other processes may commit a change whose
# timestamp is slightly older than one already seen. Applying a change twice is harmless, but
# its enforcement delay is observed once: the ids of changes read within the overlap are kept.
OVERLAP = timedelta(seconds=5)


def _entry(doc: dict[str, Any]) -> BankEntry:
    return BankEntry(
        entry_id=str(doc["_id"]),
        bank=str(doc["bank"]),
        hash_hex=str(doc["hash"]).lower(),
        reason=str(doc.get("reason", "")),
    )


class BankMatcher:
    def __init__(self, banks: BankRepo) -> None:
        self._banks = banks
        self._lock = threading.Lock()
        self._generation = -1
        self._since: datetime | None = None
        self._built_at: datetime | None = None
        self._seen: dict[str, datetime] = {}  # change id -> its time, while it may be re-read
        self._present: dict[str, str] = {}  # entry id -> signal type
        self._narrow: dict[str, MultiIndexHashIndex] = {}
        self._pdq: dict[str, BankEntry] = {}
        self._pdq_index = WideHashIndex([])
        self._settings: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._present)

    # ---- keeping current ---------------------------------------------------------------
    def refresh(self) -> None:
        generation = self._banks.generation()
        if generation == self._generation:
            return
        with self._lock:
            if self._since is None:
                self._build()
            else:
                self._apply(self._banks.changes_since(self._since - OVERLAP))
            self._settings = {str(d["_id"]): d for d in self._banks.all_settings()}
            self._generation = generation
            metrics.INDEX_SIZE.set(len(self._present))

    def _build(self) -> None:
        started = now()
        self._narrow = {"phash": MultiIndexHashIndex(), "dhash": MultiIndexHashIndex()}
        for doc in self._banks.entries():
            self._add(doc)
        self._rebuild_pdq()
        self._since = started
        self._built_at = started

    def _apply(self, changes: list[dict[str, Any]]) -> None:
        pdq_changed = False
        for change in changes:
            for doc in change.get("entries", []):
                entry_id = str(doc["_id"])
                if change["action"] == "added" and entry_id not in self._present:
                    pdq_changed |= self._add(doc)
                elif change["action"] == "removed" and entry_id in self._present:
                    signal = self._present.pop(entry_id)
                    if signal == "pdq":
                        self._pdq.pop(entry_id, None)
                        pdq_changed = True
                    else:
                        self._narrow[signal].remove([entry_id])
            at: datetime = change["at"]
            self._observe(change, at)
            if self._since is None or at > self._since:
                self._since = at
        if pdq_changed:
            self._rebuild_pdq()
        if self._since is not None:  # what the next read's overlap cannot return again
            horizon = self._since - OVERLAP
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}

    def _observe(self, change: dict[str, Any], at: datetime) -> None:
        """The change's enforcement delay, once per change in this process. A change written
        before the index was built was enforced by the build, not now: it is not observed."""
        entries = ",".join(str(d.get("_id")) for d in change.get("entries", []))
        change_id = str(change.get("_id") or f"{change['action']}:{entries}@{at.isoformat()}")
        if change_id in self._seen:
            return
        self._seen[change_id] = at
        if self._built_at is not None and at < self._built_at:
            return
        metrics.BANK_ENFORCE_SECONDS.observe(max(0.0, (now() - at).total_seconds()))

    def _add(self, doc: dict[str, Any]) -> bool:
        signal = str(doc.get("signal_type", "phash"))
        entry = _entry(doc)
        self._present[entry.entry_id] = signal
        if signal == "pdq":
            self._pdq[entry.entry_id] = entry
            return True
        self._narrow[signal].add([entry])
        return False

    def _rebuild_pdq(self) -> None:
        self._pdq_index = WideHashIndex(self._pdq.values())

    # ---- matching ----------------------------------------------------------------------
    def threshold(self, bank: str, signal: str) -> int:
        configured = (self._settings.get(bank) or {}).get("thresholds") or {}
        return int(configured.get(signal, DEFAULT_THRESHOLDS[signal]))

    def match(self, signals: ImageSignals) -> tuple[str, HashMatch] | None:
        """The closest entry within its own bank's threshold, trying pHash, dHash, then PDQ
        (a PDQ hash below a bank's minimum quality is not matched against that bank)."""
        with self._lock:
            for signal in ("phash", "dhash"):
                index = self._narrow.get(signal)
                if index is None or not len(index):
                    continue
                widest = max(DEFAULT_THRESHOLDS[signal], *self._max_thresholds(signal))
                for found in index.within(signals.get(signal), widest):
                    if found.distance <= self.threshold(found.bank, signal):
                        return signal, found
            if len(self._pdq_index):
                widest = max(DEFAULT_THRESHOLDS["pdq"], *self._max_thresholds("pdq"))
                best = self._pdq_index.nearest(signals.pdq, widest)
                if best is not None and best.distance <= self.threshold(best.bank, "pdq"):
                    bank_settings = self._settings.get(best.bank) or {}
                    minimum = int(bank_settings.get("pdq_min_quality", PDQ_MIN_QUALITY))
                    if signals.pdq_quality >= minimum:
                        return "pdq", best
        return None

    def _max_thresholds(self, signal: str) -> list[int]:
        return [self.threshold(bank, signal) for bank in self._settings] or [0]
