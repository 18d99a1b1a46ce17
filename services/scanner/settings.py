"""Scanner settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from services.shared.settings import CommonSettings


class ScannerSettings(CommonSettings):
    group_id: str = "chatpic-scanner"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8004
    model_threads: int = 1
    review_threshold: float = 0.45
    blocked_threshold: float = 0.8
    scan_frames: int = 4  # frames of an animation that are scored (the worst counts)
    # Attempts at one record before it goes to the dead-letter topic (transient errors).
    max_attempts: int = 5
    retry_backoff_s: float = 1.0
