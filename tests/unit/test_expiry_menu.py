"""The link expiry menu from settings (CHATPIC_LINK_EXPIRY_CHOICES_S): parsed, sorted and checked
against the bounds links enforces, at start; where the upload page reads it (the page and
/api/v1/limits); and the plain form's "Custom…" expiry as links reads it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.links.options import LinkRequest, form_expiry, resolve
from services.links.settings import LinksSettings
from services.shared.errors import DomainError
from services.shared.linkoptions import duration_text, expiry_menu

DAY = 86400
WEEK = 7 * DAY
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_default_menu_is_the_one_the_page_always_offered() -> None:
    for settings in (IngestSettings(), LinksSettings()):
        menu = expiry_menu(
            settings.link_expiry_choices_s, settings.min_expires_in_s, settings.max_expires_in_s
        )
        assert menu == (600, 3600, DAY, WEEK)
    # ingest reads the bounds links enforces, from the same variables
    assert (IngestSettings().min_expires_in_s, IngestSettings().max_expires_in_s) == (
        LinksSettings().min_expires_in_s,
        LinksSettings().max_expires_in_s,
    )


def test_the_menu_is_sorted_without_repeats_and_blanks() -> None:
    assert expiry_menu(" 86400, 600 ,,3600,600,86400 ", 60, WEEK) == (600, 3600, DAY)
    assert expiry_menu("60,604800", 60, WEEK) == (60, WEEK)  # the bounds themselves are fine


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPIC_LINK_EXPIRY_CHOICES_S", "1800,300")
    monkeypatch.setenv("CHATPIC_MAX_EXPIRES_IN_S", "3600")
    s = IngestSettings()
    assert expiry_menu(s.link_expiry_choices_s, s.min_expires_in_s, s.max_expires_in_s) == (
        300,
        1800,
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("600,abc", "'abc' is not a whole number of seconds"),
        ("600,1.5", "'1.5' is not a whole number of seconds"),
        ("600,1h", "'1h' is not a whole number of seconds"),
        ("0", "0 is not a positive number of seconds"),
        ("-600", "-600 is not a positive number of seconds"),
        ("30,600", "30 s is outside the expiries links accepts"),
        ("600,604801", "604801 s is outside the expiries links accepts"),
        ("", "give at least one expiry"),
        (" , ,", "give at least one expiry"),
    ],
)
def test_a_bad_menu_is_refused_naming_the_setting_and_the_value(text: str, said: str) -> None:
    with pytest.raises(ValueError) as refused:
        expiry_menu(text, 60, WEEK)
    message = str(refused.value)
    assert message.startswith("CHATPIC_LINK_EXPIRY_CHOICES_S: ") and said in message, message


def test_ingest_does_not_start_with_a_bad_menu() -> None:
    with pytest.raises(ValueError, match=r"CHATPIC_LINK_EXPIRY_CHOICES_S: 1209600 s is outside"):
        create_app(IngestSettings(link_expiry_choices_s="3600,1209600"))


def test_a_menu_beyond_a_lowered_maximum_is_refused_too() -> None:
    with pytest.raises(ValueError, match="CHATPIC_MAX_EXPIRES_IN_S=3600"):
        create_app(IngestSettings(max_expires_in_s=3600))  # the default menu goes to 7 days


def test_the_page_and_the_limits_api_offer_the_configured_menu_and_custom_bounds() -> None:
    settings = IngestSettings(
        link_expiry_choices_s="7200,900", min_expires_in_s=300, max_expires_in_s=2 * DAY
    )
    client = TestClient(create_app(settings))  # no lifespan: these routes need no database
    options = client.get("/api/v1/limits").json()["link_options"]
    assert options["expires_in_s"] == [900, 7200]
    assert options["min_expires_in_s"] == 300 and options["max_expires_in_s"] == 2 * DAY
    assert options["expiry_units_s"] == {"minutes": 60, "hours": 3600, "days": DAY}

    page = client.get("/").text
    radios = re.findall(r'name="expires_in" value="([^"]+)"', page)
    assert radios == ["900", "7200", "custom"]
    assert re.search(r'value="900" checked><span>15 min</span>', page)
    assert 'data-min-s="300" data-max-s="172800"' in page
    assert re.search(r"from\s+5 min to 2 days\.", page)
    assert '<label for="expiry-amount">Custom length</label>' in page
    assert 'name="expiry_amount"' in page and 'name="expiry_unit"' in page


def test_with_3600_off_the_menu_the_first_choice_is_picked() -> None:
    page = TestClient(create_app(IngestSettings(link_expiry_choices_s="900,86400"))).get("/").text
    assert re.findall(r'name="expires_in" value="(\d+)" checked', page) == ["900"]


@pytest.mark.parametrize(
    ("choice", "amount", "unit", "seconds"),
    [
        ("3600", None, None, 3600),
        ("3600", "5", "days", 3600),  # a menu choice wins over a custom length left filled in
        (None, None, None, None),
        ("", "", "", None),
        ("custom", "90", "minutes", 5400),
        ("Custom", " 36 ", "hours", 36 * 3600),
        ("custom", "2", "DAYS", 2 * DAY),
    ],
)
def test_the_plain_form_expiry_is_a_menu_value_or_a_custom_length(
    choice: str | None, amount: str | None, unit: str | None, seconds: int | None
) -> None:
    assert form_expiry(choice, amount, unit) == seconds


@pytest.mark.parametrize(
    ("amount", "unit", "field"),
    [
        (None, "hours", "expiry_amount"),
        ("", "hours", "expiry_amount"),
        ("0", "hours", "expiry_amount"),
        ("-3", "hours", "expiry_amount"),
        ("1.5", "hours", "expiry_amount"),
        ("1e3", "hours", "expiry_amount"),
        ("9" * 10, "hours", "expiry_amount"),
        ("3", "weeks", "expiry_unit"),
        ("3", None, "expiry_unit"),
    ],
)
def test_a_bad_custom_length_is_refused_with_the_field(
    amount: str | None, unit: str | None, field: str
) -> None:
    with pytest.raises(DomainError) as refused:
        form_expiry("custom", amount, unit)
    assert refused.value.status == 400 and refused.value.code == "invalid_option"
    assert refused.value.data["field"] == field
    assert "minutes, hours or days" in refused.value.message


def test_a_custom_length_beyond_the_maximum_is_refused_in_words() -> None:
    settings = LinksSettings()
    req = LinkRequest(image_id="i", owner_token="t", expires_in=form_expiry("custom", "8", "days"))
    with pytest.raises(DomainError) as refused:
        resolve(req, settings, NOW)
    assert refused.value.status == 400 and refused.value.code == "expires_in_too_long"
    assert refused.value.to_dict() == {
        "code": "expires_in_too_long",
        "message": "The expiry is too long: a link can last at most 7 days.",
        "limit": WEEK,
    }
    short = LinkRequest(image_id="i", owner_token="t", expires_in=30)
    with pytest.raises(DomainError, match="must last at least 1 minute") as refused:
        resolve(short, settings, NOW)
    assert refused.value.code == "expires_in_too_short"
    ok = LinkRequest(image_id="i", owner_token="t", expires_in=form_expiry("custom", "7", "days"))
    assert resolve(ok, settings, NOW).expires_in_s == WEEK


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1 second"), (90, "90 seconds"), (60, "1 minute"), (5400, "90 minutes"),
     (3600, "1 hour"), (DAY, "1 day"), (WEEK, "7 days"), (36 * 3600, "36 hours")],
)  # fmt: skip
def test_durations_are_said_in_their_largest_whole_unit(seconds: int, text: str) -> None:
    assert duration_text(seconds) == text
