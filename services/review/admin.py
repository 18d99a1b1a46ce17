"""What the admin pages show: bank overviews, the audit log (filters, CSV export) and the
blocked images whose evidence is still held. Plain functions over the ports; the routes in
``admin_routes`` decode requests, call these and render."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.review import domain
from services.review.csvcells import spreadsheet_text
from services.review.ports import Ports
from services.shared.errors import DomainError
from services.shared.mongo import Doc
from services.shared.repos import AuditFilter

PAGE_SIZE = 50
EXPORT_MAX_ROWS = 100_000
AUDIT_CSV_HEADER = ("at", "actor", "action", "target", "reason", "data")
_AUDIT_FIELDS = frozenset({"_id", "at", "actor", "action", "target", "reason"})


@dataclass(frozen=True)
class Page:
    """One page of rows, and whether there is a next one."""

    rows: list[dict[str, Any]]
    number: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.number > 1


def _page(docs: list[Doc], number: int) -> Page:
    return Page(docs[:PAGE_SIZE], number, len(docs) > PAGE_SIZE)


def _skip(number: int) -> int:
    return (number - 1) * PAGE_SIZE


# --- banks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankSummary:
    bank: str
    counts: dict[str, int]
    thresholds: dict[str, int]
    pdq_min_quality: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def bank_summaries(p: Ports) -> list[BankSummary]:
    """Every bank with its entry counts per signal type and the settings in force."""
    out = []
    signals = list(domain.SIGNALS)
    for name in p.banks.bank_names():
        try:
            current = domain.get_bank_settings(banks=p.banks, bank=name)
        except DomainError:
            continue  # a name no bank may have (never written through the API)
        out.append(
            BankSummary(
                name, p.banks.counts(name, signals), current.thresholds, current.pdq_min_quality
            )
        )
    return out


def bank_entries(p: Ports, bank: str, number: int) -> Page:
    """Entries of one bank (or of every bank when ``bank`` is empty), newest first."""
    docs = p.banks.page(bank or None, PAGE_SIZE + 1, _skip(number))
    return _page(docs, number)


# --- audit log ---------------------------------------------------------------------------------


def _bound(value: str, name: str, end: bool) -> datetime | None:
    """A filter bound: ``YYYY-MM-DD`` (a whole UTC day; ``to`` includes that day) or an ISO
    date and time (UTC unless it says otherwise; exact)."""
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DomainError(
            f"'{name}' is a date like 2026-12-31 (or a date and time).",
            code="invalid_date",
            field=name,
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit_filter(actor: str, action: str, target: str, since: str, until: str) -> AuditFilter:
    return AuditFilter(
        actor=actor.strip(),
        action=action.strip(),
        target=target.strip(),
        since=_bound(since, "from", end=False),
        until=_bound(until, "to", end=True),
    )


def extra_data(doc: Doc) -> dict[str, Any]:
    """What a record carries beyond who, when, what and why."""
    return {k: v for k, v in doc.items() if k not in _AUDIT_FIELDS}


def _json(data: dict[str, Any]) -> str:
    if not data:
        return ""
    return json.dumps(data, default=str, sort_keys=True, separators=(",", ":"))


def audit_rows(p: Ports, filters: AuditFilter, number: int) -> Page:
    docs = p.audit.find(filters, PAGE_SIZE + 1, _skip(number))
    rows = [{**d, "data": _json(extra_data(d))} for d in docs]
    return _page(rows, number)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return spreadsheet_text(value)


@dataclass(frozen=True)
class AuditExport:
    text: str
    rows: int
    truncated: bool


def export_audit_csv(p: Ports, filters: AuditFilter, *, actor: str) -> AuditExport:
    """The matching records, newest first, as CSV (at most ``EXPORT_MAX_ROWS``). The export is
    itself audited before anything is handed out."""
    docs = p.audit.find(filters, EXPORT_MAX_ROWS + 1)
    truncated = len(docs) > EXPORT_MAX_ROWS
    docs = docs[:EXPORT_MAX_ROWS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AUDIT_CSV_HEADER)
    for d in docs:
        writer.writerow(
            [
                _iso(d.get("at")),
                spreadsheet_text(d.get("actor")),
                spreadsheet_text(d.get("action")),
                spreadsheet_text(d.get("target")),
                spreadsheet_text(d.get("reason")),
                _json(extra_data(d)),
            ]
        )
    p.audit.record(
        "audit_export",
        actor,
        "audit",
        "",
        filters=filters.given(),
        rows=len(docs),
        truncated=truncated,
    )
    return AuditExport(out.getvalue(), len(docs), truncated)


# --- evidence vault ------------------------------------------------------------------------------


def evidence_held(p: Ports, number: int) -> Page:
    """Blocked images whose evidence bytes are still in the vault, newest first."""
    return _page(p.images.evidence_held(PAGE_SIZE + 1, _skip(number)), number)
