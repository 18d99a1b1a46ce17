"""The local profile's quirks live in settings; production must bring its own secret."""

from __future__ import annotations

import pytest

from services.shared.settings import CommonSettings
from services.shared.tokens import new_id, new_token, same_hash, token_hash


def test_local_profile_uses_short_group_timeouts() -> None:
    local = CommonSettings(profile="local")
    assert local.session_timeout_ms() == 2000 and local.heartbeat_interval_ms() == 500
    prod = CommonSettings(profile="production", secret_salt="s3cret")
    assert prod.session_timeout_ms() >= 10_000
    assert (
        CommonSettings(
            profile="production", kafka_session_timeout_ms=12000, secret_salt="x"
        ).session_timeout_ms()
        == 12000
    )


def test_production_refuses_to_run_without_a_secret() -> None:
    with pytest.raises(RuntimeError, match="CHATPIC_SECRET_SALT"):
        CommonSettings(profile="production").salt()
    assert CommonSettings(profile="production", secret_salt="abc").salt() == b"abc"


def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPIC_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("CHATPIC_MONGO_DB", "other")
    s = CommonSettings()
    assert s.kafka_bootstrap == "kafka:9092" and s.mongo_db == "other"


def test_tokens_are_long_random_and_stored_hashed() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) >= 32 for t in tokens)  # 24 bytes -> 32 url-safe chars, 192 bits
    assert len(new_id()) == 32
    t = new_token()
    h = token_hash(b"salt", t)
    assert t not in h and len(h) == 64
    assert same_hash(h, token_hash(b"salt", t))
    assert not same_hash(h, token_hash(b"other-salt", t))


def test_try_again_in_says_the_wait_in_words() -> None:
    from services.shared.errors import try_again_in

    assert try_again_in(0.2) == "Try again in 1 second."
    assert try_again_in(45) == "Try again in 45 seconds."
    assert try_again_in(60) == "Try again in 1 minute."
    assert try_again_in(565) == "Try again in 10 minutes."
