"""A custom link expiry on the upload page, in a real browser: picked by keyboard on a phone,
checked against the bounds before a byte is sent, sent as expires_in, and stored as the link's
expires_at in MongoDB; with JavaScript off the plain form sends the number and unit and links
works it out. Beyond the maximum, links stays the judge: 400 expires_in_too_long, its sentence
on the page.

Screenshots land in /tmp/chatpic-shots/ (CHATPIC_SHOTS)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.browser.conftest import DESKTOP, PHONE
from tests.live import Live
from tests.unit.corpus import corpus_path

PHOTO = "DSCN0010.jpg"
MAX_S = 7 * 86400  # CHATPIC_MAX_EXPIRES_IN_S (default) in the live stack
TOO_LONG = "The expiry is too long: a link can last at most 7 days."
SLACK_S = 5  # clock reads around the request, MongoDB's millisecond datetimes


def stored_expiry(live: Live, image_id: str) -> datetime:
    (doc,) = list(live.db.links.find({"image_id": image_id}))
    expires_at: datetime = doc["expires_at"]
    return expires_at


def assert_expires_in(expires_at: datetime, before: float, after: float, seconds: int) -> None:
    at = expires_at.astimezone(UTC).timestamp()
    assert before + seconds - SLACK_S <= at <= after + seconds + SLACK_S, (
        f"expires_at {expires_at} is not about now + {seconds} s "
        f"(now was {datetime.fromtimestamp(before, UTC)}..{datetime.fromtimestamp(after, UTC)})"
    )


def posted_form(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.post_data or "").items()}


def test_a_custom_expiry_chosen_by_keyboard_on_a_phone_becomes_the_links_expiry(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE)
    page = context.new_page()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    page.goto(urls["ingest"] + "/")
    page.set_input_files("#file", str(corpus_path(PHOTO)))

    box = page.locator("#expiry-custom-fields")
    expect(box).to_be_hidden()  # only while "Custom…" is picked
    expect(page.get_by_text("Custom…", exact=True)).to_be_visible()
    # Keyboard: arrows move through the menu to "Custom…", Tab goes on to the number, then unit.
    page.focus("input[name=expires_in]:checked")
    for _ in range(8):
        if page.get_by_label("Custom…", exact=True).is_checked():
            break
        page.keyboard.press("ArrowRight")
    expect(page.get_by_label("Custom…", exact=True)).to_be_checked()
    expect(box).to_be_visible()
    amount = page.get_by_label("Custom length", exact=True)  # the visible label
    unit = page.get_by_label("Unit of the custom length")
    page.keyboard.press("Tab")
    expect(amount).to_be_focused()
    page.keyboard.type("8")
    page.keyboard.press("Tab")
    expect(unit).to_be_focused()
    unit.select_option("days")
    shot = page.locator("#options")
    card = shot.bounding_box()
    assert card is not None
    for control in (amount, unit):  # inside the card on a phone, at a finger's height
        rect = control.bounding_box()
        assert rect is not None and rect["height"] >= 44, rect
        assert card["x"] <= rect["x"] and rect["x"] + rect["width"] <= card["x"] + card["width"]

    # Over the maximum: said next to the field and above the button; nothing is uploaded.
    page.get_by_role("button", name="Upload & get link").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That is too long: a link can last at most 7 days."
    )
    expect(page.locator("#expiry-custom-error")).to_have_text(
        "That is too long: a link can last at most 7 days."
    )
    expect(amount).to_be_focused()
    expect(amount).to_have_attribute("aria-invalid", "true")
    assert sent == [], sent
    shot.screenshot(path=str(shots / "custom-expiry-1-too-long.png"))

    # 90 minutes is fine: the messages go, and the page sends expires_in=5400 only.
    amount.fill("90")
    unit.select_option("minutes")
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("#expiry-custom-error")).to_be_hidden()
    shot.screenshot(path=str(shots / "custom-expiry-2-90-minutes.png"))
    before = time.time()
    with page.expect_request(lambda r: r.url.endswith("/links/new"), timeout=60_000) as made:
        page.get_by_role("button", name="Upload & get link").click()
    form = posted_form(made.value)
    assert form["expires_in"] == "5400", form
    assert "expiry_amount" not in form and "expiry_unit" not in form, form
    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    after = time.time()
    page.screenshot(path=str(shots / "custom-expiry-3-created.png"), full_page=True)
    assert_expires_in(stored_expiry(live, form["image_id"]), before, after, 5400)
    context.close()


def test_links_refuses_a_custom_expiry_past_its_maximum_and_the_page_says_why(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    """Ingest configured with a longer maximum than links (served by rewriting the page's
    bounds): the page lets 8 days through, links refuses it with a code and a sentence."""
    from playwright.sync_api import expect

    context = browser.new_context(**DESKTOP)
    page = context.new_page()

    def longer_max(route: Any) -> None:
        response = route.fetch()
        body = response.text().replace(f'data-max-s="{MAX_S}"', 'data-max-s="2592000"')
        assert 'data-max-s="2592000"' in body
        route.fulfill(response=response, body=body)

    page.route(urls["ingest"] + "/", longer_max)
    page.goto(urls["ingest"] + "/")
    page.set_input_files("#file", str(corpus_path(PHOTO)))
    page.get_by_label("Custom…", exact=True).check()
    page.get_by_label("Custom length", exact=True).fill("8")
    page.get_by_label("Unit of the custom length").select_option("days")
    with (
        page.expect_request(lambda r: r.url.endswith("/links/new"), timeout=60_000) as made,
        page.expect_response(lambda r: r.url.endswith("/links/new"), timeout=60_000) as answer,
    ):
        page.get_by_role("button", name="Upload & get link").click()
    form = posted_form(made.value)
    assert form["expires_in"] == str(8 * 86400), form
    assert answer.value.status == 400
    expect(page.get_by_role("heading", name="No link was made")).to_be_visible()
    expect(page.get_by_text(TOO_LONG)).to_be_visible()
    expect(page.locator(".code")).to_have_text("expires_in_too_long")
    page.screenshot(path=str(shots / "custom-expiry-4-refused.png"), full_page=True)
    assert live.db.links.count_documents({"image_id": form["image_id"]}) == 0
    context.close()


def upload_without_javascript(page: Any, urls: dict[str, str]) -> str:
    page.goto(urls["ingest"] + "/")
    page.set_input_files("#file", str(corpus_path(PHOTO)))
    page.get_by_role("button", name="Upload photo").click()
    assert page.url == urls["ingest"] + "/upload"
    image_id: str = page.locator('#link-form input[name="image_id"]').get_attribute("value")
    return image_id


def create_until_scanned(page: Any, shots: Path, name: str) -> None:
    page.get_by_role("button", name="Create share link").click()
    for _ in range(240):  # the links page offers "Try again" while the check runs
        again = page.get_by_role("button", name="Try again")
        if not again.count():
            break
        page.wait_for_timeout(250)
        again.click()
    page.screenshot(path=str(shots / name), full_page=True)


def test_without_javascript_the_plain_form_sends_a_custom_number_and_unit(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE, java_script_enabled=False)
    page = context.new_page()

    # Past the maximum: links refuses, and says so.
    refused_id = upload_without_javascript(page, urls)
    expect(page.get_by_label("Custom length", exact=True)).to_be_visible()  # no script to hide it
    expect(page.get_by_text("from 1 s to 7 days")).to_be_visible()
    page.get_by_label("Custom…", exact=True).check()
    page.get_by_label("Custom length", exact=True).fill("8")
    page.get_by_label("Unit of the custom length").select_option("days")
    page.screenshot(path=str(shots / "custom-expiry-5-nojs-form.png"), full_page=True)
    create_until_scanned(page, shots, "custom-expiry-6-nojs-refused.png")
    expect(page.get_by_role("heading", name="No link was made")).to_be_visible()
    expect(page.get_by_text(TOO_LONG)).to_be_visible()
    expect(page.locator(".code")).to_have_text("expires_in_too_long")
    assert live.db.links.count_documents({"image_id": refused_id}) == 0

    # Within it: 2 days, worked out by links from the number and the unit.
    image_id = upload_without_javascript(page, urls)
    page.get_by_label("Custom…", exact=True).check()
    page.get_by_label("Custom length", exact=True).fill("2")
    page.get_by_label("Unit of the custom length").select_option("days")
    before = time.time()
    create_until_scanned(page, shots, "custom-expiry-7-nojs-created.png")
    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    after = time.time()
    assert_expires_in(stored_expiry(live, image_id), before, after, 2 * 86400)
    context.close()
