"""Review settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from services.shared.settings import HttpServiceSettings


class ReviewSettings(HttpServiceSettings):
    # Until reviewer login lands, the console must only listen on the loopback interface.
    host: str = "127.0.0.1"
    port: int = 8003
    evidence_sweep_interval_s: float = 300.0
