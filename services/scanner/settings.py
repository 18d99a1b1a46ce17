"""Scanner settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from services.shared.settings import CommonSettings


class ScannerSettings(CommonSettings):
    group_id: str = "chatpic-scanner"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8004
    model_threads: int = 1
    # Thresholds of the built-in nudenet card's exposed-explicit labels (a card file has its own).
    review_threshold: float = 0.45
    blocked_threshold: float = 0.8
    # JSON model card file; empty = the built-in nudenet 320n card (see README, "The NSFW model").
    model_card: str = ""
    # A second card scored beside the live one and recorded in the verdict; it never decides.
    shadow_model_card: str = ""
    scan_decode_size: int = 320  # JPEGs decoded at the smallest DCT scale at least this big
    scan_frames: int = 4  # frames of an animation that are scored (the worst counts)
    # Attempts at one record before it goes to the dead-letter topic (transient errors).
    max_attempts: int = 5
    retry_backoff_s: float = 1.0
