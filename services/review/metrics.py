"""Review metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter

TAKEDOWNS = Counter(
    "chatpic_review_takedowns_total", "Live images removed because a new bank entry matched."
)
BANK_CHANGES = Counter(
    "chatpic_review_bank_changes_total", "Hash bank entries added or removed.", ["action"]
)
