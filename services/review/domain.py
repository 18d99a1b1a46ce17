"""Hash-bank entries, per-bank settings and CSV exchange. Plain functions over repositories.

The signal-type registry is ``services.shared.signals``, the same one the scanner matches with.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.review.csvcells import restore_text, spreadsheet_text
from services.shared.errors import DomainError
from services.shared.repos import BankRepo, ImageRepo
from services.shared.signals import PDQ_MIN_QUALITY, SIGNAL_TYPES, SignalType, hamming
from services.shared.tokens import new_id

SIGNALS = SIGNAL_TYPES  # the registry, by the name this module's callers use
CSV_HEADER = ("signal_type", "hash", "bank", "reason")
IMPORT_MAX_BYTES = 2 * 1024 * 1024
IMPORT_MAX_ROWS = 20_000
MAX_REASON = 500
MAX_SOURCE = 200
_MAX_LISTED_ERRORS = 100
RESERVED_BANKS = frozenset({"entries"})  # GET /api/v1/banks/entries lists every entry
_HEX = re.compile(r"^[0-9a-f]+$")
_BANK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def retroactive_takedown(
    *,
    images: ImageRepo,
    bank: str,
    entry_id: str,
    hash_value: str,
    max_distance: int,
    signal_type: str = "phash",
) -> list[str]:
    """A new bank entry also applies to what is already live: every visible image whose hash
    of this signal type is within ``max_distance`` is removed at once, and its links stop
    serving it."""
    removed = []
    for image_id, value in images.live_hashes(signal_type):
        if len(value) != len(hash_value):
            continue
        distance = hamming(value, hash_value)
        if distance <= max_distance and images.take_down(
            image_id,
            {"reason": f"hash_match:{bank}", "entry_id": entry_id, "distance": distance},
        ):
            removed.append(image_id)
    return removed


# --- validation ------------------------------------------------------------------------------


def check_bank(bank: str) -> str:
    if not _BANK.match(bank) or bank in RESERVED_BANKS:
        raise DomainError(
            "Bank names are lowercase letters, digits, '-' or '_' (up to 64), not 'entries'.",
            code="invalid_bank",
        )
    return bank


def check_signal_type(signal_type: str) -> SignalType:
    signal = SIGNALS.get(signal_type)
    if signal is None:
        raise DomainError(
            f"Unknown signal type; use one of {sorted(SIGNALS)}.",
            code="unsupported_signal_type",
        )
    return signal


def check_hash(signal_type: str, hash_value: str) -> str:
    """The hash as lowercase hex of the length its signal type needs."""
    signal = check_signal_type(signal_type)
    value = hash_value.strip().lower()
    if len(value) != signal.hex_len or not _HEX.match(value):
        raise DomainError(
            f"A {signal_type} hash is {signal.hex_len} hexadecimal characters.",
            code="invalid_hash",
        )
    return value


def check_reason(reason: str) -> str:
    value = reason.strip()
    if not value:
        raise DomainError("Every entry needs a reason.", code="missing_reason")
    if len(value) > MAX_REASON:
        raise DomainError(f"A reason is at most {MAX_REASON} characters.", code="reason_too_long")
    return value


# --- entries ---------------------------------------------------------------------------------


def add_bank_entry(
    *, banks: BankRepo, bank: str, signal_type: str, hash_value: str, reason: str, source: str
) -> str:
    check_bank(bank)
    value = check_hash(signal_type, hash_value)
    entry_id = new_id()
    banks.add(
        {
            "_id": entry_id,
            "bank": bank,
            "signal_type": signal_type,
            "hash": value,
            "reason": reason[:MAX_REASON],
            "source": source[:MAX_SOURCE],
        }
    )
    return entry_id


# --- per-bank settings -----------------------------------------------------------------------


@dataclass(frozen=True)
class BankSettings:
    bank: str
    thresholds: dict[str, int] = field(
        default_factory=lambda: {n: s.default_threshold for n, s in SIGNALS.items()}
    )
    pdq_min_quality: int = PDQ_MIN_QUALITY

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank": self.bank,
            "thresholds": dict(self.thresholds),
            "pdq_min_quality": self.pdq_min_quality,
        }


def _stored(bank: str, doc: Mapping[str, Any] | None) -> BankSettings:
    defaults = BankSettings(bank)
    if doc is None:
        return defaults
    thresholds = dict(defaults.thresholds)
    for name, bits in (doc.get("thresholds") or {}).items():
        if name in SIGNALS:
            thresholds[name] = int(bits)
    return BankSettings(bank, thresholds, int(doc.get("pdq_min_quality", PDQ_MIN_QUALITY)))


def get_bank_settings(*, banks: BankRepo, bank: str) -> BankSettings:
    """The settings in force for ``bank``: what is stored, defaults for anything not stored."""
    check_bank(bank)
    return _stored(bank, banks.settings(bank))


def _check_threshold(signal_type: str, bits: object) -> int:
    signal = check_signal_type(signal_type)
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise DomainError(
            f"The {signal_type} threshold is a whole number.", code="invalid_threshold"
        )
    if not 0 <= bits <= signal.max_threshold:
        raise DomainError(
            f"The {signal_type} threshold is between 0 and {signal.max_threshold} bits.",
            code="invalid_threshold",
            signal_type=signal_type,
        )
    return bits


def update_bank_settings(
    *,
    banks: BankRepo,
    bank: str,
    thresholds: Mapping[str, object] | None = None,
    pdq_min_quality: object = None,
) -> BankSettings:
    """Change some thresholds and/or the PDQ minimum quality; anything not given is kept."""
    current = get_bank_settings(banks=banks, bank=bank)
    new_thresholds = dict(current.thresholds)
    for name, bits in (thresholds or {}).items():
        new_thresholds[name] = _check_threshold(name, bits)
    quality = current.pdq_min_quality
    if pdq_min_quality is not None:
        if (
            not isinstance(pdq_min_quality, int)
            or isinstance(pdq_min_quality, bool)
            or not 0 <= pdq_min_quality <= 100
        ):
            raise DomainError(
                "The PDQ minimum quality is a whole number from 0 to 100.",
                code="invalid_quality",
            )
        quality = pdq_min_quality
    updated = BankSettings(bank, new_thresholds, quality)
    banks.put_settings(bank, {"thresholds": new_thresholds, "pdq_min_quality": quality})
    return updated


# --- CSV exchange ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvRow:
    line: int
    signal_type: str
    hash: str
    reason: str


def _row_error(line: int, code: str, message: str) -> dict[str, Any]:
    return {"line": line, "code": code, "message": message}


def parse_bank_csv(data: bytes, bank: str) -> list[CsvRow]:
    """Every row of a ``signal_type,hash,bank,reason`` file (header optional) for ``bank``.

    All or nothing: any bad row raises one 400 ``invalid_csv`` listing every bad line number
    (physical lines, 1-based; a quoted multi-line row counts from its first line). An empty
    ``bank`` cell means this bank; another bank's name is an error. A reason the export wrote
    as ``'=…`` (or ``'+ '- '@``: a formula disarmed) is read back without that apostrophe;
    any other leading apostrophe is part of the reason.
    """
    check_bank(bank)
    if len(data) > IMPORT_MAX_BYTES:
        raise DomainError(
            f"A CSV import is at most {IMPORT_MAX_BYTES} bytes.", code="too_large", status=413
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DomainError(
            f"The CSV is not UTF-8 (byte {exc.start}).", code="invalid_encoding"
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[CsvRow] = []
    errors: list[dict[str, Any]] = []
    start = 1
    first = True
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(_row_error(start, "malformed_csv", f"unreadable CSV: {exc}"))
            break  # the reader cannot resynchronise after a quoting error
        line, start = start, reader.line_num + 1
        if not cells or all(not c.strip() for c in cells):
            continue  # blank line
        if first:
            first = False
            if tuple(c.strip().lower() for c in cells) == CSV_HEADER:
                continue
        if len(rows) + len(errors) >= IMPORT_MAX_ROWS:
            raise DomainError(
                f"A CSV import has at most {IMPORT_MAX_ROWS} rows.",
                code="too_many_rows",
                status=413,
            )
        if len(cells) != len(CSV_HEADER):
            errors.append(
                _row_error(
                    line,
                    "wrong_column_count",
                    f"expected {len(CSV_HEADER)} columns ({','.join(CSV_HEADER)}), "
                    f"got {len(cells)}",
                )
            )
            continue
        signal_type, hash_value, row_bank, reason = (c.strip() for c in cells)
        try:
            if row_bank and row_bank != bank:
                raise DomainError(
                    f"row is for bank {row_bank[:64]!r}, not {bank!r}", code="wrong_bank"
                )
            value = check_hash(signal_type.lower(), hash_value)
            reason = check_reason(restore_text(reason))  # '=x (as exported) is =x again
            rows.append(CsvRow(line, signal_type.lower(), value, reason))
        except DomainError as exc:
            errors.append(_row_error(line, exc.code, exc.message))
    if errors:
        raise DomainError(
            f"{len(errors)} bad row(s); nothing was imported.",
            code="invalid_csv",
            bad_lines=[e["line"] for e in errors][:_MAX_LISTED_ERRORS],
            errors=errors[:_MAX_LISTED_ERRORS],
        )
    if not rows:
        raise DomainError("The CSV has no rows.", code="empty_csv")
    return rows


@dataclass(frozen=True)
class ImportResult:
    bank: str
    rows: int
    imported: int
    duplicates: int  # already in the bank, or repeated in the file

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank": self.bank,
            "rows": self.rows,
            "imported": self.imported,
            "duplicates": self.duplicates,
        }


def import_bank_csv(*, banks: BankRepo, bank: str, data: bytes, source: str) -> ImportResult:
    """Validate every row, then add the new ones in one batch (file order is kept on export).
    Entries already in the bank (same signal type and hash) are counted, not added again."""
    rows = parse_bank_csv(data, bank)
    seen = {(d["signal_type"], d["hash"]) for d in banks.entries_in(bank)}
    docs: list[dict[str, Any]] = []
    for row in rows:
        key = (row.signal_type, row.hash)
        if key in seen:
            continue
        seen.add(key)
        docs.append(
            {
                "_id": new_id(),
                "bank": bank,
                "signal_type": row.signal_type,
                "hash": row.hash,
                "reason": row.reason,
                "source": source.strip()[:MAX_SOURCE] or "csv-import",
            }
        )
    if docs:
        banks.add_many(docs)
    return ImportResult(bank, len(rows), len(docs), len(rows) - len(docs))


def export_bank_csv(*, banks: BankRepo, bank: str) -> str:
    """The bank as ``signal_type,hash,bank,reason`` rows (header first), oldest first. The
    reason (free text) never reads as a spreadsheet formula: ``=x`` is written ``'=x``, which
    the import reads back as ``=x``; signal types, hashes and bank names cannot start so."""
    check_bank(bank)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for d in banks.entries_in(bank):
        reason = spreadsheet_text(d.get("reason", ""))
        writer.writerow([d["signal_type"], d["hash"], d["bank"], reason])
    return out.getvalue()
