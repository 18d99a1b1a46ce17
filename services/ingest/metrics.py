"""Ingest metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UPLOADS = Counter(
    "chatpic_ingest_uploads_total", "Uploads by outcome and refusal code.", ["outcome", "code"]
)
BYTES_IN = Counter("chatpic_ingest_bytes_in_total", "Bytes received in accepted uploads.")
BYTES_OUT = Counter("chatpic_ingest_bytes_out_total", "Bytes stored after re-encoding.")
PROCESSING = Histogram(
    "chatpic_ingest_processing_seconds",
    "Time to sanitise and store one upload.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUBLISHES = Counter(
    "chatpic_ingest_publishes_total", "image.uploaded publishes by outcome.", ["outcome"]
)
