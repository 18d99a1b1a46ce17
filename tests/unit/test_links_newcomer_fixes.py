"""A newcomer's findings, without a database: a password with no UTF-8 form is a 400 (never a
500, never a counted guess), over-long link passwords say so with the limit, owner actions with
no key are 401, a deleted or expired photo is 410 image_gone, and every upload form carries a
one-time key so links makes one link per form."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.ingest.app import create_app as create_ingest_app
from services.ingest.settings import IngestSettings
from services.links.app import bearer, create_app, request_key
from services.links.creation import unavailable
from services.links.options import LinkRequest, OwnerRequest, resolve
from services.links.passwords import PasswordCheck, validate_new
from services.links.ports import Ports
from services.links.settings import LinksSettings
from services.links.visitors import Viewer
from services.shared.errors import DomainError
from services.shared.linkoptions import PASSWORD_MAX_LENGTH
from services.shared.passwords import InvalidPassword, hash_password, verify_password
from services.shared.ratelimit import RateLimiter

LONE = "\ud800"  # what JSON "\ud800" decodes to: no UTF-8 form
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_a_lone_surrogate_is_an_invalid_password_not_a_crash() -> None:
    stored = hash_password("hunter2")
    for call in (lambda: hash_password(LONE), lambda: verify_password(stored, "a" + LONE)):
        with pytest.raises(InvalidPassword) as caught:
            call()
        assert caught.value.status == 400 and caught.value.code == "invalid_password"
        assert caught.value.message  # a sentence for people
    # Text that has a UTF-8 form still works, and hashes made before still verify.
    assert verify_password(stored, "hunter2") and not verify_password(stored, "hunter3")
    assert verify_password(hash_password("pässwörd ✓"), "pässwörd ✓")


def test_a_wrong_typed_password_is_invalid_password() -> None:
    with pytest.raises(InvalidPassword):
        verify_password(hash_password("x"), cast(str, 123))


class CountingLimiter:
    def __init__(self) -> None:
        self.hits = 0

    def peek(self, key: str) -> Any:
        return type("Allowance", (), {"allowed": True, "retry_after_s": 0})()

    def hit(self, key: str) -> None:
        self.hits += 1


def test_an_invalid_password_on_reveal_is_not_a_counted_guess() -> None:
    limiter = CountingLimiter()
    check = PasswordCheck(cast(RateLimiter, limiter))
    link = {"link_id": "L1", "password_hash": hash_password("hunter2")}
    with pytest.raises(InvalidPassword):
        check.check(link, Viewer(key="v1", password=LONE))
    assert limiter.hits == 0
    with pytest.raises(DomainError) as wrong:
        check.check(link, Viewer(key="v1", password="nope"))
    assert wrong.value.code == "wrong_password" and limiter.hits == 1
    check.check(link, Viewer(key="v1", password="hunter2"))  # the right one passes


def test_link_passwords_are_checked_before_hashing() -> None:
    settings = LinksSettings()
    assert settings.password_max_length == PASSWORD_MAX_LENGTH == 128
    with pytest.raises(DomainError) as long:
        validate_new("a" * 129, settings.password_max_length)
    assert long.value.code == "password_too_long" and long.value.data == {"limit": 128}
    assert "128" in long.value.message
    assert validate_new("a" * 128, 128) == "a" * 128
    with pytest.raises(InvalidPassword):
        validate_new(LONE, 128)
    # The API model no longer cuts long passwords off as a generic invalid_request:
    req = LinkRequest(image_id="i", owner_token="t", password="a" * 10_000)
    with pytest.raises(DomainError) as api:
        resolve(req, settings, NOW)
    assert api.value.code == "password_too_long" and api.value.data["limit"] == 128


def test_ids_and_keys_without_a_utf8_form_are_refused_per_field() -> None:
    for fields in ({"image_id": LONE, "owner_token": "t"}, {"image_id": "i", "owner_token": LONE}):
        with pytest.raises(ValidationError):
            LinkRequest(**fields)
        with pytest.raises(ValidationError):
            OwnerRequest(**fields)


def test_no_owner_key_is_401_with_a_challenge() -> None:
    for header in (None, "", "Basic abc", "Bearer ", "Bearer    "):
        with pytest.raises(DomainError) as caught:
            bearer(header)
        err = caught.value
        assert (err.status, err.code) == (401, "owner_key_missing"), header
        assert err.headers is not None and err.headers["WWW-Authenticate"].startswith("Bearer")
    assert bearer("Bearer  k3y ") == "k3y"
    assert bearer("bearer " + "x" * 300) == "x" * 300  # wrong keys go on to the action's 404


def test_revoke_and_delete_without_a_key_answer_401() -> None:
    app = create_app(LinksSettings(), ports=cast(Ports, object()))
    client = TestClient(app)  # no lifespan: the key is checked before any repository
    for path in ("/api/v1/links/abc", "/api/v1/owner/images/abc", "/api/v1/images/abc"):
        resp = client.delete(path)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["code"] == "owner_key_missing" and resp.json()["message"]
        assert resp.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("status", "http", "code"),
    [
        ("deleted", 410, "image_gone"),
        ("expired", 410, "image_gone"),
        ("removed", 451, "removed"),
        ("pending", 409, "not_scanned_yet"),
        ("review", 409, "under_review"),
        ("blocked", 403, "image_not_available"),
        ("unheard-of", 403, "image_not_available"),
    ],
)
def test_why_no_link_can_be_made(status: str, http: int, code: str) -> None:
    err = unavailable(status)
    assert (err.status, err.code) == (http, code)
    assert err.message


def test_request_keys() -> None:
    assert request_key(None) is None and request_key("  ") is None
    assert request_key(" k0123456789 ") == "k0123456789"
    for bad in ("short", "has space inside", "x" * 129, "ключ-ключ-ключ"):
        with pytest.raises(DomainError) as caught:
            request_key(bad)
        assert caught.value.code == "invalid_idempotency_key" and caught.value.status == 400


def test_every_upload_form_carries_a_fresh_one_time_key() -> None:
    client = TestClient(create_ingest_app(IngestSettings()))  # no lifespan: the page only
    keys = [
        re.findall(r'name="idempotency_key" value="([^"]+)"', client.get("/").text)
        for _ in range(2)
    ]
    assert all(len(k) == 1 for k in keys), keys
    first, second = keys[0][0], keys[1][0]
    assert first != second
    assert request_key(first) == first  # links accepts what the page sends
