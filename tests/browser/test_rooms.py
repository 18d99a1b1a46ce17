"""Two people in one private room, each in their own browser context (no shared cookies or
storage): they see each other's messages live; a photo appears for both only once the scanner
cleared it; a reviewer removes it after a report and it disappears for both at once; a photo
whose hash is banned never appears for anyone."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from services.scanner.hashing import phash_hex
from services.scanner.imaging import load_normalized
from tests.browser.conftest import DESKTOP, PHONE
from tests.integration.links_helpers import unique_photo
from tests.live import Live

ROOM_URL = re.compile(r"/r/([A-Za-z0-9_-]{22,})")
IMG_DRAWN = "(sel) => { const i = document.querySelector(sel); return !!i && i.naturalWidth > 0; }"
# Records in window.__imageSeen, per message id, the Date.now() at which an <img> of that
# message first entered #messages (a MutationObserver runs in the same task as the insertion);
# returns how many images the list held when it was installed.
WATCH_IMAGES = """() => {
  const list = document.querySelector("#messages");
  const seen = (window.__imageSeen = {});
  const note = (node) => {
    if (!(node instanceof Element)) return;
    const imgs = node.tagName === "IMG" ? [node] : [...node.querySelectorAll("img")];
    for (const img of imgs) {
      const li = img.closest("li[data-id]");
      const id = li ? li.dataset.id : "";
      if (!(id in seen)) seen[id] = Date.now();
    }
  };
  new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach(note)))
    .observe(list, { childList: true, subtree: true });
  return list.querySelectorAll("img").length;
}"""
# Both clocks are this machine's; MongoDB keeps milliseconds (truncated), Date.now() too.
CLOCK_SLACK_MS = 2


def shot(page: Any, shots: Path, name: str) -> None:
    page.wait_for_timeout(250)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def join(page: Any, nickname: str) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Nickname").fill(nickname)
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#status")).to_contain_text(f"You are {nickname}")


def say(page: Any, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def start_room(browser: Any, urls: dict[str, str], name: str) -> tuple[Any, Any, Any, Any, str]:
    """Ana (desktop) creates a private room from the rooms page and lands on it; Ben (phone)
    has a page of his own. Returns both contexts, both pages and the room's slug."""
    ana_ctx = browser.new_context(**DESKTOP)
    ben_ctx = browser.new_context(**PHONE)
    ana, ben = ana_ctx.new_page(), ben_ctx.new_page()
    ana.goto(urls["rooms"] + "/rooms")
    ana.get_by_label("Room name").fill(name)
    ana.get_by_role("button", name="Create room").click()
    ana.wait_for_url(ROOM_URL)
    slug = ROOM_URL.search(ana.url).group(1)  # type: ignore[union-attr]
    return ana_ctx, ben_ctx, ana, ben, slug


def clearing_ms(image: dict[str, Any]) -> float:
    """When the image became cleared, in ms since the epoch: the scanner's verdict time
    (``scanned_at``), or a reviewer's clearance (``cleared_at``) if it was held first."""
    times = [image[k] for k in ("scanned_at", "cleared_at") if image.get(k) is not None]
    assert times, f"no clearing time stored: {sorted(image)}"
    return float(max(t.timestamp() for t in times)) * 1000


def open_job(live: Live, image_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = live.db.review_jobs.find_one({"image_id": image_id, "state": "open"})
        if job is not None:
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"no open review job for {image_id}")


def test_two_people_in_a_private_room(
    browser: Any, live: Live, urls: dict[str, str], shots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    # Ana starts a private room; it is not listed, and she lands on it as its owner.
    ana_ctx, ben_ctx, ana, ben, slug = start_room(browser, urls, "Weekend photos")
    assert slug not in live.rooms.get("/rooms").text
    assert all(r["slug"] != slug for r in live.rooms.get("/api/v1/rooms").json()["rooms"])
    join(ana, "Ana")
    expect(ana.get_by_text("Owner controls")).to_be_visible()
    # The owner key left the address bar (copying it to invite people hands out no controls);
    # the owner link is shown to keep.
    assert "owner" not in ana.url
    ana.get_by_text("Owner controls").click()
    expect(ana.locator("#owner-link")).to_contain_text(f"/r/{slug}#owner=")

    # Ben gets the address (without Ana's owner key) and joins from his phone.
    ben.goto(f"{urls['rooms']}/r/{slug}")
    join(ben, "Ben")
    expect(ben.get_by_text("Owner controls")).to_be_hidden()
    expect(ana.locator("#members")).to_contain_text("Ben")

    say(ana, "hello from Ana")
    expect(ben.locator("#messages")).to_contain_text("hello from Ana")
    say(ben, "hi Ana <b>bold?</b>")
    expect(ana.locator("#messages")).to_contain_text("hi Ana <b>bold?</b>")  # text, not markup
    assert ana.locator("#messages b").count() == 0
    shot(ana, shots, "room-1-chat-desktop")
    shot(ben, shots, "room-2-chat-phone")

    # Ana posts a photo: "scanning" for her, nothing for Ben until the scanner cleared it.
    # Ben's page notes when each photo first enters his message list (whatever the scan's
    # speed), to compare with when the verdict was stored.
    assert ben.evaluate(WATCH_IMAGES) == 0
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(unique_photo(7501))
    ana.set_input_files("#photo", str(photo))
    expect(ana.locator("#messages")).to_contain_text("scanning", timeout=30_000)
    room_id = live.db.rooms.find_one({"slug": slug})["_id"]  # other tests have an "Ana" too
    message = live.db.room_messages.find_one(
        {"room_id": room_id, "kind": "image", "nickname": "Ana"}
    )
    assert message is not None
    image_id = str(message["image_id"])
    selector = f'#messages li[data-id="{message["_id"]}"] img'
    for page in (ana, ben):
        page.wait_for_function(IMG_DRAWN, arg=selector, timeout=60_000)
    image = live.db.images.find_one({"_id": image_id})
    assert image["status"] == "cleared"
    seen_ms = ben.evaluate("(id) => window.__imageSeen[id] ?? null", str(message["_id"]))
    assert isinstance(seen_ms, int | float), "Ben's page never noted the photo"
    cleared_ms = clearing_ms(image)
    assert seen_ms >= cleared_ms - CLOCK_SLACK_MS, (
        f"Ben saw the photo {cleared_ms - seen_ms} ms before its verdict was stored"
    )
    shot(ben, shots, "room-3-photo-cleared")

    # Ben reports it; a reviewer removes it; it vanishes from both pages without a reload.
    item = ben.locator(f'#messages li[data-id="{message["_id"]}"]')
    item.get_by_text("Report", exact=True).click()
    item.get_by_label("Reason").select_option("harassment")
    item.get_by_role("button", name="Send report").click()
    expect(item).to_contain_text("Reported")
    job = open_job(live, image_id)
    assert live.review.post(f"/api/v1/jobs/{job['_id']}/lease").status_code == 200
    decided = live.review.post(
        f"/api/v1/jobs/{job['_id']}/decision", json={"action": "remove", "reason": "harassment"}
    )
    assert decided.status_code == 200, decided.text
    if decided.json().get("next_job_id"):
        live.review.post(f"/api/v1/jobs/{decided.json()['next_job_id']}/release")
    for page in (ana, ben):
        expect(page.locator(selector)).to_have_count(0, timeout=15_000)
    expect(ben.locator("#messages")).to_contain_text("hello from Ana")  # the rest stays
    gone = live.rooms.get(f"/r/{slug}/images/{message['_id']}")
    assert gone.status_code in (404, 410, 451), gone.status_code

    # A photo whose hash is banned never reaches Ben; Ana is told it was not accepted.
    banned = unique_photo(7502)
    added = live.review.post(
        "/api/v1/banks/rooms-test/entries",
        json={"hash": phash_hex(load_normalized(banned)), "reason": "room test ban"},
    )
    assert added.status_code == 201, added.text
    photo.write_bytes(banned)
    ana.set_input_files("#photo", str(photo))
    expect(ana.locator("#messages")).to_contain_text("not accepted", timeout=60_000)
    assert ben.locator("#messages img").count() == 0
    # Not even for a moment: the only photo that ever entered Ben's list is the cleared one.
    assert ben.evaluate("() => Object.keys(window.__imageSeen)") == [str(message["_id"])]
    shot(ana, shots, "room-4-photo-refused")

    assert ana_ctx.cookies() == [] and ben_ctx.cookies() == []
    ana_ctx.close()
    ben_ctx.close()
