"""Review metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TAKEDOWNS = Counter(
    "chatpic_review_takedowns_total", "Live images removed because a new bank entry matched."
)
BANK_CHANGES = Counter(
    "chatpic_review_bank_changes_total", "Hash bank entries added or removed.", ["action"]
)

# Review queues (and queue="rooms": open room reports). Gauges are refreshed by the intake loop
# every few seconds.
QUEUE_DEPTH = Gauge("chatpic_review_queue_depth", "Open review jobs, by queue.", ["queue"])
OLDEST_JOB_AGE = Gauge(
    "chatpic_review_oldest_job_age_seconds", "Age of the oldest open job, by queue.", ["queue"]
)
DECISIONS = Counter(
    "chatpic_review_decisions_total",
    "Reviewer decisions, by action (clear, remove, remove_ban, escalate, uphold, overturn).",
    ["action"],
)
REPORT_TO_DECISION = Histogram(
    "chatpic_review_report_to_decision_seconds",
    "From an image's first report to the decision on its reports job.",
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)
APPEALS_OVERTURNED = Counter(
    "chatpic_review_appeals_overturned_total", "Appeals that restored a removed image."
)
ROOM_DECISIONS = Counter(
    "chatpic_review_room_decisions_total",
    "Decisions on room reports, by action (remove_message, mute, close, dismiss).",
    ["action"],
)
UNPUBLISHED = Counter(
    "chatpic_review_events_unpublished_total",
    "Events the broker did not take (the decision stands in MongoDB), by event type.",
    ["event"],
)
JOBS_OPENED = Counter(
    "chatpic_review_jobs_opened_total", "Jobs the review intake opened, by queue.", ["queue"]
)
JOBS_CLOSED = Counter(
    "chatpic_review_jobs_closed_total",
    "Open jobs closed without a decision of their own, by reason.",
    ["reason"],
)

# Console logins, by outcome (ok, failed, locked): a rising "failed"/"locked" is someone guessing.
LOGINS = Counter("chatpic_review_logins_total", "Console login attempts, by outcome.", ["outcome"])
