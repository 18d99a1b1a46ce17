"""Share links in a real browser: the reveal, the view page that works once, end-of-session
links with a password made from the upload page, and link expanders that must spend nothing.

Screenshots land in /tmp/chatpic-shots/ (CHATPIC_SHOTS) for a person to look at."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import DESKTOP, PHONE
from tests.live import Live
from tests.unit.corpus import corpus_bytes, corpus_path

PHOTO = "DSCN0010.jpg"  # a normal 640x480 camera JPEG
PASSWORD = "blue heron 42"
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
VIEW_PAGE = re.compile(r"/v/[A-Za-z0-9_-]{20,}$")
# True once the photo on the view page has been decoded and drawn.
PHOTO_DRAWN = """() => {
  const img = document.getElementById("photo");
  return Boolean(img && img.complete && img.naturalWidth > 0);
}"""


def shot(page: Any, shots: Path, name: str) -> None:
    page.wait_for_timeout(250)  # let colour transitions settle
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def api_link(live: Live, **options: Any) -> dict[str, Any]:
    """A cleared photo and a link to it, made through the JSON APIs."""
    uploaded = live.upload(corpus_bytes(PHOTO))
    assert uploaded.status_code == 202, uploaded.text
    body = uploaded.json()
    assert live.wait_status(body["image_id"]) == "cleared"
    made = live.links.post(
        "/api/v1/links",
        json={"image_id": body["image_id"], "owner_token": body["owner_token"], **options},
    )
    assert made.status_code == 201, made.text
    link: dict[str, Any] = made.json()
    return link


def share_text(live: Live, url: str) -> tuple[int, str]:
    """The share page as a person's browser gets it (the API client is not a link expander)."""
    page = live.links.get(url, headers={"Accept": "text/html", "User-Agent": "Mozilla/5.0"})
    return page.status_code, page.text


def reveal_with(page: Any, password: str | None = None) -> Any:
    """Press "Reveal photo" (after typing the password, if any); the response it led to."""
    if password is not None:
        page.get_by_label("Password").fill(password)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Reveal photo").click()
    return nav.value


def test_reveal_shows_the_photo_once_and_a_reload_ends_the_view(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    url = api_link(live, max_views=1)["url"]
    assert url.startswith(urls["links"] + "/s/")
    context = browser.new_context(**PHONE)
    page = context.new_page()
    images: list[int] = []
    page.on("response", lambda r: images.append(r.status) if r.url.endswith("/image") else None)

    assert page.goto(url).status == 200
    expect(page.get_by_text("1 view left")).to_be_visible()
    expect(page.get_by_text("This is the last view")).to_be_visible()
    assert page.locator("img").count() == 0  # nothing of the photo before the reveal
    shot(page, shots, "share-1-share-page")

    response = reveal_with(page)
    assert response.status == 200 and VIEW_PAGE.search(page.url), page.url
    page.wait_for_function(PHOTO_DRAWN)
    size = page.evaluate(
        "() => [document.getElementById('photo').naturalWidth,"
        " document.getElementById('photo').naturalHeight]"
    )
    assert size == [640, 480], size
    expect(page.locator("#photo")).to_be_visible()
    shot(page, shots, "share-2-view-page")
    assert images == [200]  # the image URL was fetched exactly once

    again = page.reload()  # the view was spent with its image
    assert again.status == 410
    expect(page.get_by_text("This view has ended.")).to_be_visible()
    assert page.locator("img").count() == 0
    assert images == [200]  # the reload asked for no image at all
    shot(page, shots, "share-3-view-reloaded")

    assert page.goto(url).status == 410  # and the link itself is used up
    expect(page.get_by_role("heading", name="This photo has been viewed")).to_be_visible()
    expect(page.get_by_text("used_up")).to_be_visible()
    assert context.cookies() == []
    context.close()


def test_upload_page_end_of_session_link_with_a_password(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    owner = browser.new_context(**PHONE)
    page = owner.new_page()
    page.goto(urls["ingest"] + "/")
    page.set_input_files("#file", str(corpus_path(PHOTO)))
    expect(page.locator("#file-name")).to_have_text(PHOTO)

    # Views per person can never exceed the link's views: with one view there is no choice.
    per_person = page.get_by_role("group", name="Views per person").get_by_role("radio")
    expect(per_person).to_have_count(4)
    for radio in per_person.all():
        expect(radio).to_be_disabled()
    page.get_by_label("3 times").check()
    for radio in per_person.all():
        expect(radio).to_be_enabled()
    page.locator("input[name=max_views_per_viewer][value='1']").check()
    page.get_by_label("End when I close this page").check()
    page.get_by_label("Password (optional)").fill(PASSWORD)
    expect(page.get_by_label("Password (optional)")).to_have_attribute("type", "password")
    shot(page, shots, "session-1-options")

    page.get_by_role("button", name="Upload & get link").click()
    page.wait_for_url(urls["links"] + "/links/new", timeout=60_000)
    made_at = time.monotonic()
    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    for fact in ("3 views", "1 per person", "Password protected"):
        expect(page.locator(".meta").get_by_text(fact)).to_be_visible()
    url = page.locator("#share-url").inner_text().strip()
    assert url.startswith(urls["links"] + "/s/"), url
    state = page.locator("#session-state")
    expect(state).to_contain_text("Keep this page open")
    expect(state).to_have_attribute("data-alive-until", re.compile(r"^\d{4}-"))  # a heartbeat
    said = re.search(r"ends (\d+) seconds after", state.inner_text())
    assert said, state.inner_text()
    grace = int(said.group(1))
    assert grace <= 10, f"the test stack should set CHATPIC_SESSION_GRACE_S small, not {grace}"
    shot(page, shots, "session-2-created")

    # Someone else opens it: the password is asked for, and a wrong one costs no view.
    viewer = browser.new_context(**PHONE)
    share = viewer.new_page()
    share.goto(url)
    expect(share.get_by_text("3 views left")).to_be_visible()
    expect(share.get_by_text("1 per person")).to_be_visible()
    expect(share.get_by_text("Ends when the sender closes their page")).to_be_visible()
    expect(share.get_by_label("Password")).to_be_visible()
    shot(share, shots, "session-3-share-page")
    assert reveal_with(share, "not the password").status == 403
    expect(share.get_by_role("alert")).to_have_text("That password is not right.")
    expect(share.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    expect(share.get_by_text("3 views left")).to_be_visible()
    shot(share, shots, "session-4-wrong-password")
    assert share_text(live, url)[1].count("3 views left") == 1

    assert reveal_with(share, PASSWORD).status == 200 and VIEW_PAGE.search(share.url)
    share.wait_for_function(PHOTO_DRAWN)
    shot(share, shots, "session-5-view-page")
    share.goto(url)
    expect(share.get_by_text("2 views left")).to_be_visible()
    assert reveal_with(share, PASSWORD).status == 410  # one per person
    expect(share.get_by_text("You have used all your views of this link.")).to_be_visible()

    # The open page keeps the link alive past its grace period...
    share.wait_for_timeout(max(0.0, made_at + grace + 1 - time.monotonic()) * 1000)
    status, text = share_text(live, url)
    assert status == 200 and "2 views left" in text, status

    # ...and closing it ends the link once the grace period has passed.
    owner.close()
    closed_at = time.monotonic()
    while True:
        status, text = share_text(live, url)
        if status != 200 or time.monotonic() - closed_at > grace + 5:
            break
        share.wait_for_timeout(250)
    assert status == 410 and "session_ended" in text, (status, time.monotonic() - closed_at)
    share.goto(url)
    expect(share.get_by_text("The sender closed their page")).to_be_visible()
    shot(share, shots, "session-6-ended")
    viewer.close()


def test_link_expanders_get_a_neutral_card_and_spend_nothing(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    url = api_link(live, max_views=1)["url"]
    token = url.rsplit("/", 1)[1]
    bot = browser.new_context(user_agent=SLACK, **DESKTOP)
    page = bot.new_page()
    assert page.goto(url).status == 200
    expect(page.get_by_text("A private photo on ChatPic")).to_be_visible()
    assert page.locator("img").count() == 0
    assert page.locator("meta[property='og:image']").count() == 0
    assert page.locator("meta[property='og:title']").get_attribute("content")
    html = page.content()
    assert token not in html and "view left" not in html  # says nothing about this link
    assert page.locator("form").count() == 0
    shot(page, shots, "expander-1-card")
    refused = bot.request.post(url + "/reveal", headers={"Accept": "application/json"})
    assert refused.status == 403 and refused.json()["code"] == "automated_request"
    bot.close()

    status, text = share_text(live, url)  # a person still has the one view
    assert status == 200 and "1 view left" in text
