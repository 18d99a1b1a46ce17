"""Review metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter

BANK_CHANGES = Counter(
    "chatpic_review_bank_changes_total", "Hash bank entries added or removed.", ["action"]
)
