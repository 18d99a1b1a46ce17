"""Links settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from services.shared.settings import HttpServiceSettings


class LinksSettings(HttpServiceSettings):
    port: int = 8002
    default_expires_in_s: int = 3600
    max_expires_in_s: int = 7 * 24 * 3600
    default_max_views: int = 1
    max_max_views: int = 1000
    min_expires_in_s: int = 60
    # Reports per client (salted address hash) per window.
    report_rate_limit: int = 20
    report_rate_window_s: int = 3600
