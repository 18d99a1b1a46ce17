"""Ingest settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from services.shared.settings import HttpServiceSettings


class IngestSettings(HttpServiceSettings):
    port: int = 8001
    max_upload_bytes: int = 20 * 1024 * 1024
    max_width: int = 12000
    max_height: int = 12000
    max_pixels: int = 50_000_000
    max_frames: int = 300
    max_total_pixels: int = 500_000_000
    max_long_edge: int = 2048
    # Photos decoded at once (each may hold hundreds of MB of pixels); more uploads wait.
    intake_concurrency: int = 2
    jpeg_quality: int = 82
    webp_quality: int = 80
    # Re-publish a pending image whose record may have been lost after this many seconds.
    republish_after_s: float = 30.0
    republish_interval_s: float = 2.0
    # After this many acknowledged publishes with no verdict, hold the image for a human (fail
    # closed). Publishes the broker refused (an outage) do not count.
    max_publish_attempts: int = 20
    # How often the pending-image gauges (chatpic_ingest_pending_images, ..._oldest_pending_
    # age_seconds, ..._outbox_unpublished) are read from MongoDB.
    backlog_refresh_s: float = 5.0
    # Uploads per client (salted hash of the address) per window; 429 with Retry-After beyond.
    upload_rate_limit: int = 30
    upload_rate_window_s: int = 600
