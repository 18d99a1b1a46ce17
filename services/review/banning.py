"""Changing the hash banks, the one path every caller takes (the bank API, the admin pages, a
reviewer's "remove and ban"): the change itself, its audit record, the metrics, the
`bank.changed` push to every scanner and, for a new entry, the retroactive takedown of live
copies. Plain synchronous functions: routes call them in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass

from services.review import announce, domain, metrics
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared.errors import NotFound


@dataclass(frozen=True)
class Added:
    entry_id: str
    bank: str
    taken_down: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"entry_id": self.entry_id, "bank": self.bank, "taken_down": self.taken_down}


def _changed(p: Ports, action: str, bank: str, entries: int) -> None:
    metrics.BANK_CHANGES.labels(action).inc(entries or 1)
    announce.bank_changed(p.publisher, bank, action, entries)


def add_entry(
    p: Ports,
    settings: ReviewSettings,
    *,
    bank: str,
    signal_type: str,
    hash_value: str,
    reason: str,
    source: str,
    actor: str,
) -> Added:
    """Add one entry and apply it at once to what is live: every visible image within the
    bank's threshold for this signal type is removed and its links stop serving it."""
    entry_id = domain.add_bank_entry(
        banks=p.banks,
        bank=bank,
        signal_type=signal_type,
        hash_value=hash_value,
        reason=reason,
        source=source,
    )
    _changed(p, "added", bank, 1)
    # The bank's own threshold for this signal type (pHash falls back to the service's).
    current = domain.get_bank_settings(banks=p.banks, bank=bank)
    taken_down = domain.retroactive_takedown(
        images=p.images,
        bank=bank,
        entry_id=entry_id,
        hash_value=hash_value.strip().lower(),
        max_distance=current.thresholds.get(signal_type, settings.hash_max_distance),
        signal_type=signal_type,
    )
    metrics.TAKEDOWNS.inc(len(taken_down))
    p.audit.record(
        "bank.add",
        actor,
        entry_id,
        reason[: domain.MAX_REASON],
        bank=bank,
        signal_type=signal_type,
        hash=hash_value.strip().lower(),
        source=source[: domain.MAX_SOURCE],
        taken_down=taken_down,
    )
    announce.taken_down(p.publisher, taken_down, f"hash_match:{bank}")
    return Added(entry_id, bank, taken_down)


def remove_entry(p: Ports, entry_id: str, *, actor: str, reason: str = "") -> None:
    """Remove one entry (scanners stop matching it; nothing already removed comes back)."""
    entry = p.banks.get(entry_id)
    if entry is None or not p.banks.remove(entry_id):
        raise NotFound("No bank entry has this id.", code="entry_not_found")
    p.audit.record(
        "bank.remove",
        actor,
        entry_id,
        reason[: domain.MAX_REASON],
        bank=entry.get("bank", ""),
        signal_type=entry.get("signal_type", ""),
        hash=entry.get("hash", ""),
    )
    _changed(p, "removed", "", 1)


def import_csv(p: Ports, *, bank: str, data: bytes, source: str, actor: str) -> domain.ImportResult:
    """All rows or none (see ``domain.import_bank_csv``); imported entries are matched by the
    scanners from now on (an import does not take down what is already live)."""
    result = domain.import_bank_csv(banks=p.banks, bank=bank, data=data, source=source)
    p.audit.record(
        "bank.import",
        actor,
        bank,
        "",
        source=source.strip()[: domain.MAX_SOURCE] or "csv-import",
        **result.to_dict(),
    )
    _changed(p, "imported", bank, result.imported)
    return result


def update_settings(
    p: Ports,
    *,
    bank: str,
    thresholds: dict[str, int] | None,
    pdq_min_quality: int | None,
    actor: str,
) -> domain.BankSettings:
    """Change some of a bank's thresholds and/or its PDQ minimum quality."""
    updated = domain.update_bank_settings(
        banks=p.banks, bank=bank, thresholds=thresholds, pdq_min_quality=pdq_min_quality
    )
    p.audit.record("bank.settings", actor, bank, "", **updated.to_dict())
    _changed(p, "settings", bank, 0)
    return updated
