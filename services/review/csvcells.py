"""Cells of the review service's CSV exports (audit log, bank export), safe to open in a
spreadsheet: free text starting with ``= + - @``, a tab or a carriage return would be taken for
a formula, so it gets a leading ``'`` (a spreadsheet shows the text, never runs it).

``restore_text`` undoes exactly that on the way back in (the bank CSV import), so an exported
file re-imports unchanged: ``'=x`` becomes ``=x`` again. Text that already starts with ``'``
before such a character gets one more on the way out (``'=x`` → ``''=x``), so every text
survives the trip; an apostrophe before anything else is never touched."""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _formula_like(text: str) -> bool:
    return text.lstrip("'").startswith(FORMULA_START)


def spreadsheet_text(value: object) -> str:
    """Text as a spreadsheet shows it, never as a formula (a leading ' disarms one)."""
    text = "" if value is None else str(value)
    return "'" + text if _formula_like(text) else text


def restore_text(cell: str) -> str:
    """The text ``spreadsheet_text`` was given: its one added ``'`` removed, nothing else."""
    return cell[1:] if cell.startswith("'") and _formula_like(cell) else cell
