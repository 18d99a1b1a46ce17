"""The pure rules of rooms: tripcodes, nicknames, text, lifetimes, costs, room state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.rooms import domain
from services.rooms.domain import Action, Costs, FrameError
from services.rooms.ops import costs_of
from services.rooms.settings import RoomsSettings
from services.rooms.socket_routes import parse_frame
from services.shared.errors import DomainError, Gone

SALT = b"unit-test-salt"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_tripcode_is_stable_short_and_secret_dependent() -> None:
    a = domain.tripcode(SALT, "hunter2")
    assert a == domain.tripcode(SALT, "hunter2")
    assert a is not None and len(a) == 8 and "hunter2" not in a
    assert domain.tripcode(SALT, "hunter3") != a
    assert domain.tripcode(b"other-salt", "hunter2") != a
    assert domain.tripcode(SALT, None) is None and domain.tripcode(SALT, "") is None
    for bad in (42, "x" * 129):
        with pytest.raises(FrameError) as err:
            domain.tripcode(SALT, bad)
        assert err.value.code == "secret_invalid" and not err.value.fatal  # retry on the socket


@pytest.mark.parametrize("good", ["Alice", "bob_2", "Zoë", "Jean-Luc", "o'neil", "  pad  ", "李"])
def test_nicknames_accepted(good: str) -> None:
    assert domain.nickname(good) == good.strip()


@pytest.mark.parametrize(
    "bad", ["", "   ", "x" * 25, "a\u202eb", "tab\there", "<script>", "___", "two  spaces", None, 7]
)
def test_nicknames_refused(bad: object) -> None:
    with pytest.raises(FrameError) as err:
        domain.nickname(bad)
    assert err.value.code == "nickname_invalid" and not err.value.fatal  # retry on the socket


def test_nickname_keys_ignore_case() -> None:
    assert domain.nick_key("Dana") == domain.nick_key("dANA") == domain.nick_key(" DANA ")


def test_message_text_rules() -> None:
    assert domain.message_text("  hi  ", 500) == "hi"
    assert domain.message_text("line\nbreak", 500) == "line\nbreak"
    assert domain.message_text("bell\x07", 500) == "bell"
    assert len(domain.message_text("x" * 500, 500)) == 500
    for raw, code in (
        ("x" * 501, "message_too_long"),
        ("   ", "message_empty"),
        (None, "message_empty"),
        ("\x07", "message_empty"),
    ):
        with pytest.raises(FrameError) as err:
            domain.message_text(raw, 500)
        assert err.value.code == code and not err.value.fatal


def test_room_names() -> None:
    assert domain.room_name("  Lounge ") == "Lounge"
    for bad in ("", " ", "x" * 61, "bad\x00name", None):
        with pytest.raises(DomainError) as err:
            domain.room_name(bad)
        assert err.value.code == "name_invalid" and err.value.status == 422


def test_lifetime_caps_and_menu() -> None:
    assert domain.lifetime(3600, 600, 86400) == 3600
    for bad in (599, 86401, "3600", True, 3600.5):
        with pytest.raises(DomainError) as err:
            domain.lifetime(bad, 600, 86400)
        assert err.value.code == "lifetime_invalid"
    assert domain.lifetime_menu(600, 86400) == [3600, 21600, 86400]
    assert domain.lifetime_menu(600, 7200) == [3600]
    assert domain.lifetime_menu(600, 1800) == [1800]


def test_costs_weigh_joins_and_images_above_messages() -> None:
    costs = costs_of(RoomsSettings())
    assert costs.of(Action.JOIN) > costs.of(Action.MESSAGE)
    assert costs.of(Action.IMAGE) > costs.of(Action.MESSAGE)
    assert Costs(join=7).of(Action.JOIN) == 7


def room(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "closed_at": None,
        "expires_at": NOW + timedelta(hours=1),
        "idle_until": NOW + timedelta(minutes=30),
    }
    return {**base, **fields}


def test_room_state() -> None:
    assert domain.end_reason(room(), NOW) is None
    assert domain.end_reason(room(expires_at=NOW), NOW) == "expired"
    assert domain.end_reason(room(idle_until=NOW - timedelta(seconds=1)), NOW) == "idle"
    assert domain.end_reason(room(closed_at=NOW, closed_by="owner"), NOW) == "owner"
    naive = room(expires_at=(NOW - timedelta(seconds=1)).replace(tzinfo=None))
    assert domain.end_reason(naive, NOW) == "expired"
    assert domain.check_live(room(), NOW)
    with pytest.raises(Gone):
        domain.check_live(room(closed_at=NOW, closed_by="moderator"), NOW)
    with pytest.raises(DomainError) as err:
        domain.check_live(None, NOW)
    assert err.value.status == 404


def test_idle_deadline_never_passes_the_hard_end() -> None:
    end = NOW + timedelta(minutes=10)
    assert domain.idle_deadline(NOW, 1800, end) == end
    assert domain.idle_deadline(NOW, 60, end) == NOW + timedelta(seconds=60)


def test_kicks_bar_only_that_client_for_a_while() -> None:
    later = NOW + timedelta(minutes=10)
    r = room(kicked=[{"client": "abc", "until": later}, {"client": "old", "until": NOW}])
    assert domain.kicked_until(r, "abc", NOW) == later
    assert domain.kicked_until(r, "old", NOW) is None
    assert domain.kicked_until(r, "someone", NOW) is None
    assert domain.kicked_until(r, "abc", later) is None


def test_frames_are_parsed_defensively() -> None:
    assert parse_frame('{"type":"message","text":"hi"}', 100)["text"] == "hi"
    for raw, code in (
        (None, "text_frames_only"),
        ("x" * 101, "frame_too_large"),
        ("{", "malformed_frame"),
        ("[1,2]", "malformed_frame"),
        ('{"type": 5}', "malformed_frame"),
        ('"just text"', "malformed_frame"),
    ):
        with pytest.raises(FrameError) as err:
            parse_frame(raw, 100)
        assert err.value.code == code and not err.value.fatal


def test_error_frames_carry_retry_after_only_when_known() -> None:
    frame = FrameError("slow down", code="rate_limited", retry_after=7).frame()
    assert frame == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "retry_after": 7,
    }
    assert "retry_after" not in FrameError("no", code="muted").frame()


def test_lookalike_nicknames_are_folded_or_refused() -> None:
    # Fullwidth and black-letter forms fold to the plain name, so they meet "admin" as taken.
    fullwidth = "".join(chr(0xFF41 + ord(c) - ord("a")) for c in "admin")
    assert domain.nick_key(domain.nickname(fullwidth)) == domain.nick_key("Admin")
    assert domain.nickname("\u210cello") == "Hello"
    with pytest.raises(FrameError) as mixed:  # a Cyrillic A among Latin letters
        domain.nickname("\u0410dmin")
    assert mixed.value.code == "nickname_invalid"
    assert domain.nickname("\u0410\u043d\u044f") == "\u0410\u043d\u044f"  # all Cyrillic: fine
    assert domain.nickname("José") == "José"


def test_lone_surrogates_are_refused_with_a_code_not_a_crash() -> None:
    with pytest.raises(FrameError) as secret:
        domain.tripcode(b"salt", "\ud800")
    assert secret.value.code == "secret_invalid"
    with pytest.raises(FrameError) as nick:
        domain.nickname("bad\udfff")
    assert nick.value.code == "nickname_invalid"
    with pytest.raises(FrameError) as text:
        domain.message_text("hi \ud800", 500)
    assert text.value.code == "invalid_text" and "lone surrogate" in text.value.message
    with pytest.raises(FrameError) as number:
        domain.message_text(123, 500)
    assert number.value.code == "malformed_frame"


def test_emoji_sequences_keep_their_joiners() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert domain.message_text(f"hi {family}", 500) == f"hi {family}"
    assert domain.message_text("a\u200bb", 500) == "ab"  # a zero-width space still goes
