"""A newcomer's findings in the browser: a room's creator who reloads before joining is still
its owner (the key is kept in that tab's sessionStorage, never in a cookie) and sees the owner
link to keep before joining; a taken nickname can be changed without reconnecting; nobody is
offered *Report* on their own messages or photos."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.browser.test_rooms import join, say, shot, start_room
from tests.integration.links_helpers import unique_photo
from tests.live import Live


def test_the_creator_reloading_before_joining_stays_the_owner(
    browser: Any, live: Live, urls: dict[str, str], shots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    ana_ctx, ben_ctx, ana, ben, slug = start_room(browser, urls, "Reload test")
    link = re.compile(rf"/r/{slug}#owner=[A-Za-z0-9_%-]+")
    # Before joining: the key left the address bar, and the owner link is shown to keep.
    expect(ana.locator("#owner-link")).to_be_visible()
    expect(ana.locator("#owner-link")).to_have_text(link)
    assert "owner" not in ana.url
    kept = ana.locator("#owner-link").inner_text()

    # A reload (or the browser restoring the tab) before joining: still the owner.
    ana.reload()
    expect(ana.get_by_label("Nickname")).to_be_visible()
    expect(ana.locator("#owner-link")).to_be_visible()
    assert ana.locator("#owner-link").inner_text() == kept
    stored = ana.evaluate(f"() => sessionStorage.getItem('chatpic-owner:{slug}')")
    assert stored and stored in kept
    shot(ana, shots, "room-newcomer-1-reloaded-owner")

    join(ana, "Ana")
    expect(ana.get_by_text("Owner controls")).to_be_visible()

    # Ben (no owner key) tries a taken nickname, then another, without reconnecting.
    ben.goto(f"{urls['rooms']}/r/{slug}")
    expect(ben.locator("#owner-link")).to_be_hidden()
    ben.get_by_label("Nickname").fill("ana")
    ben.get_by_role("button", name="Join").click()
    expect(ben.locator("#status")).to_contain_text("already uses this nickname")
    expect(ben.get_by_label("Nickname")).to_be_visible()
    join(ben, "Ben")
    expect(ben.get_by_text("Owner controls")).to_be_hidden()
    expect(ana.get_by_role("button", name="Kick Ben")).to_be_visible()

    # No Report on your own messages; Report on everyone else's.
    say(ana, "mine to keep")
    say(ben, "from Ben")
    for page in (ana, ben):
        expect(page.locator("#messages")).to_contain_text("from Ben")
    ana_own = ana.locator("#messages li", has_text="mine to keep")
    ana_other = ana.locator("#messages li", has_text="from Ben")
    expect(ana_own.get_by_text("Report", exact=True)).to_have_count(0)
    expect(ana_other.get_by_text("Report", exact=True)).to_have_count(1)
    expect(
        ben.locator("#messages li", has_text="mine to keep").get_by_text("Report", exact=True)
    ).to_have_count(1)
    expect(
        ben.locator("#messages li", has_text="from Ben").get_by_text("Report", exact=True)
    ).to_have_count(0)

    # Nor on your own photo, scanning or shown.
    photo = tmp_path / "mine.jpg"
    photo.write_bytes(unique_photo(7601))
    ana.set_input_files("#photo", str(photo))
    scanning = ana.locator("#messages li", has_text="scanning")
    expect(scanning).to_have_count(1, timeout=30_000)
    expect(scanning.get_by_text("Report", exact=True)).to_have_count(0)
    room_id = live.db.rooms.find_one({"slug": slug})["_id"]  # other tests have an "Ana" too
    message = live.db.room_messages.find_one(
        {"room_id": room_id, "kind": "image", "nickname": "Ana"}
    )
    assert message is not None
    item = f'#messages li[data-id="{message["_id"]}"]'
    for page in (ana, ben):
        expect(page.locator(f"{item} img")).to_have_count(1, timeout=60_000)
    expect(ana.locator(item).get_by_text("Report", exact=True)).to_have_count(0)
    expect(ben.locator(item).get_by_text("Report", exact=True)).to_have_count(1)
    shot(ana, shots, "room-newcomer-2-no-report-on-own")

    assert ana_ctx.cookies() == [] and ben_ctx.cookies() == []
    ana_ctx.close()
    ben_ctx.close()
