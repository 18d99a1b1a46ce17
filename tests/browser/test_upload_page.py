"""The upload page in a real browser: phone and desktop, with and without JavaScript.

Screenshots land in /tmp/chatpic-shots/ (CHATPIC_SHOTS) for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.browser.conftest import DESKTOP, PHONE
from tests.live import Live
from tests.unit.corpus import corpus_path

PHOTO = "DSCN0010.jpg"
NOT_AN_IMAGE = "test-ole-file.doc"

# Records every text of the status line and every value of the progress bar as it happens, so
# short-lived states ("Scanning…" can last a few hundred milliseconds) are never missed.
WATCH = """() => {
  const status = document.getElementById("status"), bar = document.getElementById("bar");
  new MutationObserver(() => window.chatpicSaw("status", status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => window.chatpicSaw("progress", String(bar.value)))
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
}"""


def shot(page: Any, shots: Path, name: str) -> None:
    page.wait_for_timeout(250)  # let colour transitions settle
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def tell_page_the_links_url(page: Any, urls: dict[str, str]) -> None:
    """Serve the upload page as it is once ingest passes ``links_url`` to index.html: then the
    script uploads through the JSON API instead of posting the form to /upload."""

    def rewrite(route: Any) -> None:
        response = route.fetch()
        body = response.text().replace('data-links-url=""', f'data-links-url="{urls["links"]}"')
        route.fulfill(response=response, body=body)

    page.route(urls["ingest"] + "/", rewrite)


def upload_until_link(page: Any, urls: dict[str, str], shots: Path, prefix: str) -> list[Any]:
    """Pick the photo, press the button, hold the page on "Scanning…" for a screenshot, and
    follow it to the links service's page. Returns what the status line and bar showed, and
    the POSTs the page made."""
    from playwright.sync_api import expect

    seen: list[tuple[str, str]] = []
    page.expose_function("chatpicSaw", lambda kind, value: seen.append((kind, value)))
    page.on(
        "request",
        lambda r: seen.append(("post", r.url)) if r.method == "POST" else None,
    )
    page.clock.install()
    page.goto(urls["ingest"] + "/")
    page.evaluate(WATCH)
    shot(page, shots, f"{prefix}-1-index")
    page.set_input_files("#file", str(corpus_path(PHOTO)))
    expect(page.locator("#file-name")).to_have_text(PHOTO)
    expect(page.locator("#preview img")).to_be_visible()
    shot(page, shots, f"{prefix}-2-chosen")

    page.clock.pause_at(page.evaluate("Date.now()") + 1)  # freezes the poll's setTimeout
    page.click("#go")
    page.wait_for_function(
        "() => location.pathname === '/links/new' || "
        "document.getElementById('status').textContent === 'Scanning…'"
    )
    if page.url.startswith(urls["ingest"]):  # the first poll said pending: the page waits
        expect(page.locator("#bar")).to_have_attribute("value", "100")
        expect(page.locator("#pct")).to_have_text("100 %")
        page.wait_for_timeout(300)
        shot(page, shots, f"{prefix}-3-scanning")
    page.clock.resume()
    page.wait_for_url(urls["links"] + "/links/new", timeout=60_000)
    return seen


def test_phone_upload_shows_progress_then_scanning_then_a_link_that_works_once(
    browser: Any, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    owner = browser.new_context(**PHONE)
    page = owner.new_page()
    seen = upload_until_link(page, urls, shots, "phone")

    posts = [v for k, v in seen if k == "post"]  # today the page posts its own form to /upload
    assert posts[-1] == urls["links"] + "/links/new" and len(posts) == 2, posts
    statuses = [v for k, v in seen if k == "status"]
    progress = [v for k, v in seen if k == "progress"]
    assert "Uploading…" in statuses and "Scanning…" in statuses, seen
    assert progress and progress[-1] == "100", seen
    assert statuses.index("Scanning…") > statuses.index("Uploading…")

    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    expect(page.get_by_text("1 view, then gone")).to_be_visible()
    expect(page.get_by_role("button", name="Copy link")).to_be_visible()
    url = page.locator("#share-url").inner_text().strip()
    assert re.fullmatch(re.escape(urls["links"]) + r"/s/[A-Za-z0-9_-]{20,}", url), url
    shot(page, shots, "phone-4-created")

    # Someone else opens the link; a third person has it open at the same time.
    viewer = browser.new_context(**PHONE)
    other = browser.new_context(**DESKTOP)
    share = viewer.new_page()
    late = other.new_page()
    share.goto(url)
    late.goto(url)
    expect(share.get_by_text("1 view left")).to_be_visible()
    assert share.locator("img").count() == 0  # nothing of the photo before the reveal
    shot(share, shots, "phone-5-share")
    # The reveal leads to a view page whose image URL works once.
    with share.expect_response(lambda r: r.url.endswith("/image")) as photo:
        share.get_by_role("button", name="Reveal photo").click()
    response = photo.value
    assert response.status == 200 and response.headers["content-type"] == "image/jpeg"
    assert len(response.body()) > 10_000
    assert re.search(r"/v/[A-Za-z0-9_-]{20,}$", share.url), share.url
    share.wait_for_function("() => document.getElementById('photo').naturalWidth > 0")
    share.screenshot(path=str(shots / "phone-6-revealed.png"))

    with late.expect_navigation() as nav:
        late.get_by_role("button", name="Reveal photo").click()
    assert nav.value.status == 410
    expect(late.get_by_role("heading", name="This photo has been viewed")).to_be_visible()
    expect(late.get_by_text("This link has been used up.")).to_be_visible()
    shot(late, shots, "desktop-7-used-up")

    share.goto(url)  # coming back: the share page says so too
    expect(share.get_by_text("This link has been used up.")).to_be_visible()
    for context in (owner, viewer, other):
        assert context.cookies() == []  # no cookies, nothing that private browsing would lose
        context.close()


def test_desktop_upload_through_the_json_api_and_copy_the_link(
    browser: Any, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=urls["links"])
    page = context.new_page()
    tell_page_the_links_url(page, urls)
    seen = upload_until_link(page, urls, shots, "desktop")
    posts = [v for k, v in seen if k == "post"]
    assert posts == [urls["ingest"] + "/api/v1/images", urls["links"] + "/links/new"], posts
    url = page.locator("#share-url").inner_text().strip()
    page.get_by_role("button", name="Copy link").click()
    expect(page.locator("#copied")).to_have_text("Link copied.")
    assert page.evaluate("navigator.clipboard.readText()") == url
    shot(page, shots, "desktop-4-created")
    context.close()


def test_without_javascript_the_plain_forms_make_a_link(
    browser: Any, live: Live, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(urls["ingest"] + "/")
    expect(page.locator("#file")).to_be_visible()  # the native control, not the styled one
    expect(page.locator("#options")).to_be_hidden()  # chosen on the next page instead
    expect(page.get_by_label("Watermark (optional)")).to_be_visible()  # travels with the upload
    shot(page, shots, "nojs-1-index")
    page.set_input_files("#file", str(corpus_path(PHOTO)))
    page.get_by_label("Watermark (optional)").fill("@nojs")
    page.get_by_role("button", name="Upload photo").click()

    assert page.url == urls["ingest"] + "/upload"
    expect(page.locator("#status")).to_have_text("Scanning…")
    form = page.locator("#link-form")
    assert form.get_attribute("action") == urls["links"] + "/links/new"
    page.get_by_label("3 times").check()
    page.get_by_label("1 day").check()
    shot(page, shots, "nojs-2-uploaded")
    page.get_by_role("button", name="Create share link").click()
    for _ in range(120):  # the links page offers "Try again" while the check runs
        again = page.get_by_role("button", name="Try again")
        if not again.count():
            break
        if _ == 0:
            shot(page, shots, "nojs-3-still-checking")
        page.wait_for_timeout(250)
        again.click()
    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    expect(page.get_by_text("3 views")).to_be_visible()
    expect(page.get_by_role("button", name="Copy link")).to_be_hidden()  # needs a script
    url = page.locator("#share-url").inner_text().strip()
    assert url.startswith(urls["links"] + "/s/")
    shot(page, shots, "nojs-4-created")
    context.close()
    assert live.links.get(url.removeprefix(urls["links"])).status_code == 200


def test_refused_files_explain_why_and_keep_the_choice(
    browser: Any, urls: dict[str, str], shots: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(urls["ingest"] + "/")
    page.set_input_files("#file", str(corpus_path(NOT_AN_IMAGE)))
    page.get_by_role("button", name="Upload & get link").click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("This file type is not accepted")
    expect(page.locator("#file-name")).to_have_text(NOT_AN_IMAGE)  # still chosen
    expect(page.get_by_role("button", name="Upload & get link")).to_be_visible()
    shot(page, shots, "phone-8-unsupported")

    # Too large is caught before a byte is sent (the file is made inside the page: quicker).
    page.evaluate(
        """(size) => {
          const dt = new DataTransfer();
          dt.items.add(new File([new Uint8Array(size)], "huge.jpg", {type: "image/jpeg"}));
          const input = document.getElementById("file");
          input.files = dt.files;
          input.dispatchEvent(new Event("change"));
        }""",
        21 << 20,
    )
    expect(error).to_contain_text("photos can be up to 20.0 MB")
    expect(page.locator("#file-name")).to_have_text("huge.jpg")
    context.close()


def test_keyboard_reaches_named_controls(browser: Any, urls: dict[str, str], shots: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    page.goto(urls["ingest"] + "/")
    expect(page.locator("#file")).to_have_accessible_name("Choose photo")
    expect(page.locator("#go")).to_have_accessible_name("Upload & get link")
    assert page.locator("#bar").get_attribute("aria-label") == "Upload progress"
    assert page.locator("#live").get_attribute("aria-live") == "polite"

    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.name"))
        if reached[-1] == "file":
            outline = page.evaluate(
                "getComputedStyle(document.getElementById('file-label')).outlineStyle"
            )
            assert outline == "solid", "the focused file control shows no focus ring"
            shot(page, shots, "desktop-9-focus")
    assert "file" in reached and "go" in reached, reached
    assert reached.index("file") < reached.index("max_views") < reached.index("go")

    # Radio groups: arrow keys change the choice.
    page.focus("input[name=max_views]:checked")
    page.keyboard.press("ArrowRight")
    assert page.locator("input[name=max_views]:checked").get_attribute("value") == "3"

    # Enter on the button with nothing chosen explains, and goes to the file control.
    page.focus("#go")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Choose a photo first.")
    assert page.evaluate("document.activeElement.id") == "file"
    context.close()
