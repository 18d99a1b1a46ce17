"""Scanner metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SCANNED = Counter("chatpic_scanner_images_total", "Images scanned, by verdict.", ["verdict"])
DUPLICATES = Counter(
    "chatpic_scanner_duplicates_total", "Records for images that already had a verdict."
)
SCAN_SECONDS = Histogram(
    "chatpic_scanner_scan_seconds",
    "Scan time by stage (decode, hash, model, total).",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MODEL_SCORE = Histogram(
    "chatpic_scanner_nsfw_score",
    "Highest explicit-label score per image.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.9, 1.0),
)
BANK_MATCHES = Counter("chatpic_scanner_bank_matches_total", "Hash bank matches.", ["bank"])
BANK_ENFORCE_SECONDS = Histogram(
    "chatpic_scanner_bank_change_enforced_seconds",
    "From a bank change being written to this scanner enforcing it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
BANK_PUSHES = Counter(
    "chatpic_scanner_bank_change_events_total", "bank.changed records received by this process."
)
INDEX_SIZE = Gauge("chatpic_scanner_bank_index_size", "Hashes in this process's match index.")
DEAD_LETTERS = Counter(
    "chatpic_scanner_dead_letters_total", "Records sent to the dead-letter topic.", ["reason"]
)
SHADOW_DISAGREEMENTS = Counter(
    "chatpic_scanner_shadow_disagreements_total",
    "Scans where the shadow model's verdict differed from the live model's.",
)
QUARANTINED = Counter(
    "chatpic_scanner_quarantined_total", "Blocked images moved to the evidence vault."
)
RETRIES = Counter("chatpic_scanner_retries_total", "Transient failures that were retried.")
CONSUMER_RESTARTS = Counter(
    "chatpic_scanner_consumer_restarts_total",
    "Times this process's image.uploaded consumer failed (e.g. the broker lost mid-join) and a "
    "new one took its place.",
)
