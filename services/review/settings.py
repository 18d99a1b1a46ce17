"""Review settings (environment variables CHATPIC_*)."""

from __future__ import annotations

from pydantic import SecretStr

from services.shared.settings import HttpServiceSettings


class ReviewSettings(HttpServiceSettings):
    # Every page and API needs a reviewer login; still loopback by default (put it behind TLS).
    host: str = "127.0.0.1"
    port: int = 8003
    evidence_sweep_interval_s: float = 300.0
    # A reviewer holds a job this long after taking it; then anyone may take it again.
    review_lease_s: int = 300
    # How often held images get scanner jobs, moot jobs close and queue gauges refresh.
    review_intake_interval_s: float = 3.0

    # The first admin, created at start when no admin account exists (or: make admin USER=...).
    review_admin_username: str = "admin"
    review_admin_password: SecretStr | None = None
    # A session ends after this long without a request, and in any case after the maximum.
    review_session_ttl_s: int = 8 * 3600
    review_session_max_s: int = 24 * 3600
    # Failed logins per username and per client before a lockout; each further failure
    # doubles it (up to a day). Unknown usernames are counted the same way.
    review_login_max_failures: int = 5
    review_login_lockout_s: int = 60
    # Secure cookies: None = yes in the production profile, no in local (plain http on loopback).
    review_secure_cookies: bool | None = None

    def secure_cookies(self) -> bool:
        if self.review_secure_cookies is not None:
            return self.review_secure_cookies
        return self.profile == "production"
