"""Review metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter

REPORTS = Counter("chatpic_review_reports_total", "User reports received, by reason.", ["reason"])
BANK_CHANGES = Counter(
    "chatpic_review_bank_changes_total", "Hash bank entries added or removed.", ["action"]
)
