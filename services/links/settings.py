"""Links settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from services.shared.linkoptions import PASSWORD_MAX_LENGTH
from services.shared.settings import HttpServiceSettings


class LinksSettings(HttpServiceSettings):
    port: int = 8002
    default_expires_in_s: int = 3600
    default_max_views: int = 1
    max_max_views: int = 1000
    # Reports per client (salted address hash) per window.
    report_rate_limit: int = 20
    report_rate_window_s: int = 3600
    # This many distinct reporters hide a cleared image at once, pending review (0 = never).
    auto_hide_reporters: int = 3
    # A reveal hands out a single-use ticket for the image URL; it lapses after this long.
    ticket_ttl_s: int = 60
    # Bytes stay this long after a ticket was used, so a download still streaming completes.
    ticket_fetch_grace_s: float = 30.0
    # An end-of-session link dies this long after the uploader's page stops its heartbeat.
    session_grace_s: int = 60
    # The uploader's page sends a heartbeat this often (the server tells the page).
    session_heartbeat_s: int = 15
    # Password guesses per client per link per window; a wrong password never costs a view.
    password_attempts: int = 10
    password_window_s: int = 900
    # The longest link password (creation refuses longer: password_too_long); the share page's
    # password field takes no more. The upload page's menu uses the same constant.
    password_max_length: int = PASSWORD_MAX_LENGTH
    # Ended links and their viewer counters are kept this long (so they answer 410, not 404).
    link_record_retention_s: int = 7 * 24 * 3600
    # Cleared images that got no link within this long are deleted, bytes and all.
    unlinked_ttl_s: int = 15 * 60
    # How often the sweeper deletes the bytes of images whose links have all ended.
    sweep_interval_s: float = 10.0
    # Purged images' documents (no bytes left) are dropped by a TTL index after this long.
    image_record_retention_s: int = 7 * 24 * 3600
