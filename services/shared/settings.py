"""Settings base. Every value comes from a CHATPIC_* environment variable.

The ``local`` profile carries the measured quirks of the local broker and database
(see README, "Local infrastructure"); ``production`` uses ordinary Kafka/MongoDB defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_LOCAL_DEV_SALT = "chatpic-local-development-salt-not-for-production"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATPIC_", extra="ignore")

    profile: Literal["local", "production"] = "local"
    log_level: str = "INFO"

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "chatpic."
    # None = the profile's default (local broker: 2000/500 ms; real Kafka: 45000/3000 ms).
    kafka_session_timeout_ms: int | None = None
    kafka_heartbeat_interval_ms: int | None = None
    kafka_publish_timeout_s: float = 5.0
    # How often a service measures its consumer groups' lag (chatpic_kafka_consumer_lag).
    # None = the profile's default (local: 5 s; production: 15 s).
    kafka_lag_interval_s: float | None = None
    # How often each process checks its database and broker (chatpic_dependency_up; /readyz
    # reads the broker's last answer).
    dependency_check_interval_s: float = 5.0
    # The version shown in chatpic_build_info; empty = the installed package's version.
    build_version: str = ""

    mongo_uri: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "chatpic"
    mongo_timeout_ms: int = 3000

    # pHash Hamming distance that counts as a hash-bank match (scanner and takedowns alike).
    hash_max_distance: int = 8

    # Blocked images are kept in the evidence vault this long, then purged.
    evidence_retention_days: float = 90.0
    # Images removed by moderation keep their bytes this long after the removal, so an
    # overturned appeal can restore them; it is also the appeal window. Then review purges them.
    removed_retention_days: float = 30.0

    # Secret used to hash tokens and client addresses. Required outside the local profile.
    secret_salt: SecretStr | None = None

    def salt(self) -> bytes:
        if self.secret_salt is not None:
            return self.secret_salt.get_secret_value().encode()
        if self.profile == "local":
            return _LOCAL_DEV_SALT.encode()
        raise RuntimeError("CHATPIC_SECRET_SALT must be set outside the local profile")

    def session_timeout_ms(self) -> int:
        if self.kafka_session_timeout_ms is not None:
            return self.kafka_session_timeout_ms
        return 2000 if self.profile == "local" else 45000

    def lag_interval_s(self) -> float:
        if self.kafka_lag_interval_s is not None:
            return self.kafka_lag_interval_s
        return 5.0 if self.profile == "local" else 15.0

    def heartbeat_interval_ms(self) -> int:
        if self.kafka_heartbeat_interval_ms is not None:
            return self.kafka_heartbeat_interval_ms
        return 500 if self.profile == "local" else 3000


class HttpServiceSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    # Where browsers reach the other services (links are shown to users, forms post across).
    ingest_public_url: str = "http://127.0.0.1:8001"
    links_public_url: str = "http://127.0.0.1:8002"
    review_public_url: str = "http://127.0.0.1:8003"
    rooms_public_url: str = "http://127.0.0.1:8100"
    # Categories of the public gallery, comma-separated (links lists them; the upload page
    # offers them). Empty: no gallery choice is offered and no link can be made public.
    gallery_categories: str = "nature,memes,wallpapers,photography"
    # The expiry menu of the upload page, seconds, comma-separated (sorted, repeats dropped;
    # "Custom…" is offered beside it). Each within the bounds below, checked at start.
    link_expiry_choices_s: str = "600,3600,86400,604800"
    # Shortest and longest link expiry: links enforces them, the upload page checks them first.
    min_expires_in_s: int = 60
    max_expires_in_s: int = 7 * 24 * 3600
    # Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
