"""Ingest metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

# The backlog, read from MongoDB every few seconds (CHATPIC_BACKLOG_REFRESH_S). Every ingest
# process reports the same database-wide numbers: aggregate with max(), not sum().
PENDING_IMAGES = Gauge(
    "chatpic_ingest_pending_images", "Images accepted and still waiting for a verdict."
)
OLDEST_PENDING_AGE = Gauge(
    "chatpic_ingest_oldest_pending_age_seconds",
    "Age of the oldest image still waiting for a verdict (0 when none). Pending images are "
    "never shown (fail closed), so this is how long an uploader has been kept waiting.",
)
OUTBOX_UNPUBLISHED = Gauge(
    "chatpic_ingest_outbox_unpublished",
    "Pending images whose image.uploaded the broker has not acknowledged yet.",
)

DECODES_WAITING = Gauge(
    "chatpic_ingest_decodes_waiting",
    "Uploads read and waiting for a decode slot (CHATPIC_INTAKE_CONCURRENCY at a time).",
)
