"""The review console in a real browser, by keyboard: log in, the preview is blurred, clear one
job, remove another, remove one and ban its hashes, log out; meanwhile a second reviewer in
another browser context sees the job the first one holds as leased.

Screenshots land in /tmp/chatpic-shots/ (CHATPIC_SHOTS) for a person to look at."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from tests.browser.conftest import DESKTOP
from tests.integration.links_helpers import cleared_upload, client_from, unique_photo
from tests.live import Live

BLURRED = "() => getComputedStyle(document.getElementById('preview')).filter"
JOB_PAGE = re.compile(r"/jobs/[0-9a-f]{32}")


def shot(page: Any, shots: Path, name: str) -> None:
    page.wait_for_timeout(200)
    page.screenshot(path=str(shots / f"review-{name}.png"), full_page=True)


def reported_images(live: Live, count: int) -> list[str]:
    """``count`` cleared photos, each reported once (oldest first), and their jobs' ids."""
    jobs = []
    for i in range(count):
        image_id, _ = cleared_upload(live, unique_photo(70_000 + uuid.uuid4().int % 10**6 + i))
        address = f"127.62.{uuid.uuid4().int % 250}.{i + 1}"
        with client_from(live, address) as client:
            resp = client.post(
                "/api/v1/reports",
                json={"reason": "sexual_content", "image_id": image_id, "details": f"photo {i}"},
            )
        assert resp.status_code == 201, resp.text
        job = live.db.review_jobs.find_one({"image_id": image_id, "state": "open"})
        jobs.append(str(job["_id"]))
    return jobs


def park_other_jobs(live: Live, mine: list[str]) -> tuple[Any, list[str]]:
    """Other tests leave open report jobs behind: a parking reviewer holds them, so the keyboard
    flow below is handed exactly the jobs this test made, in order."""
    parker, _ = live.create_reviewer()
    parked: list[str] = []
    for _ in range(500):
        got = parker.post("/api/v1/queues/reports/next", json={"skip": mine + parked}).json()
        if got["job_id"] is None:
            return parker, parked
        parked.append(got["job_id"])
    raise AssertionError("could not park the other open jobs")


def log_in(context: Any, live: Live, username: str, password: str) -> Any:
    page = context.new_page()
    page.goto(live.review_url + "/")
    assert "/login" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.url.rstrip("/") == live.review_url
    return page


def press_and_wait(page: Any, *keys: str) -> None:
    """Press the keys; the last one submits and the browser lands on another page."""
    for key in keys[:-1]:
        page.keyboard.press(key)
    with page.expect_navigation():
        page.keyboard.press(keys[-1])


def test_review_console_by_keyboard(browser: Any, live: Live, shots: Path) -> None:
    from playwright.sync_api import expect

    bank = f"browser-{uuid.uuid4().hex[:6]}"
    made = live.review.put(f"/api/v1/banks/{bank}", json={})  # the bank appears in the select
    assert made.status_code == 200, made.text
    jobs = reported_images(live, 4)
    parker, parked = park_other_jobs(live, jobs)
    name = f"kbd-{uuid.uuid4().hex[:6]}"
    _, password = live.create_reviewer(name)
    watcher, watcher_password = live.create_reviewer()
    watcher_name = watcher.get("/api/v1/me").json()["username"]

    first = browser.new_context(**DESKTOP)
    page = log_in(first, live, name, password)
    expect(page.locator("#queues")).to_be_visible()
    expect(page.locator("#help")).to_contain_text("reports")
    shot(page, shots, "1-queues")

    # r: the next reports job, which is ours and now leased to us.
    press_and_wait(page, "r")
    assert page.url.endswith(f"/jobs/{jobs[0]}")
    expect(page.locator("#lease")).to_have_attribute("data-lease", "mine")
    preview = page.locator("#preview")
    expect(preview).to_have_class(re.compile("blurred"))
    page.wait_for_function("() => document.getElementById('preview').complete")
    assert "blur(24px)" in page.evaluate(BLURRED) and "grayscale(1)" in page.evaluate(BLURRED)
    shot(page, shots, "2-job-blurred")
    page.keyboard.press("v")
    expect(preview).not_to_have_class(re.compile("blurred"))
    page.wait_for_function(BLURRED.replace(".filter", '.filter === "none"'))
    page.keyboard.press("v")
    expect(preview).to_have_class(re.compile("blurred"))
    page.keyboard.down(" ")  # hold Space to peek
    expect(preview).not_to_have_class(re.compile("blurred"))
    page.keyboard.up(" ")
    expect(preview).to_have_class(re.compile("blurred"))
    expect(page.locator("#help")).to_contain_text("submit & next")
    expect(page.locator("#reports")).to_contain_text("1 distinct reporter")

    # c 1 Enter: clear, "No violation", submit & next.
    press_and_wait(page, "c", "1", "Enter")
    assert page.url.split("?")[0].endswith(f"/jobs/{jobs[1]}")
    expect(page.locator("#notice")).to_contain_text("clear")
    assert live.db.images.find_one({"_id": _image(live, jobs[0])})["status"] == "cleared"

    # r 2 Enter: remove, "Sexual content".
    press_and_wait(page, "r", "2", "Enter")
    assert page.url.split("?")[0].endswith(f"/jobs/{jobs[2]}")
    assert live.db.images.find_one({"_id": _image(live, jobs[1])})["status"] == "removed"

    # b: remove + ban; the bank select takes the focus; arrows pick the bank; Esc, 4, Enter.
    page.keyboard.press("b")
    select = page.locator("#bank")
    expect(select).to_be_focused()
    options = select.locator("option").all_inner_texts()
    current = options.index(select.input_value())
    step = "ArrowDown" if options.index(bank) > current else "ArrowUp"
    for _ in range(abs(options.index(bank) - current)):
        page.keyboard.press(step)
    assert select.input_value() == bank
    shot(page, shots, "3-remove-and-ban")
    press_and_wait(page, "Escape", "4", "Enter")
    banned = _image(live, jobs[2])
    assert live.db.images.find_one({"_id": banned})["status"] == "removed"
    entries = list(live.db.bank_entries.find({"bank": bank}))
    assert {e["signal_type"] for e in entries} >= {"phash", "dhash"}
    record = live.db.audit.find_one({"target": banned, "action": "review.remove_ban"})
    assert record["actor"] == name and record["reason"] == "non_consensual"

    # Submit & next landed on the fourth job, now ours. Another reviewer sees it leased.
    assert page.url.split("?")[0].endswith(f"/jobs/{jobs[3]}")
    second = browser.new_context(**DESKTOP)
    other = log_in(second, live, watcher_name, watcher_password)
    other.goto(f"{live.review_url}/jobs/{jobs[3]}")
    lease = other.locator("#lease")
    expect(lease).to_have_attribute("data-lease", "other")
    expect(lease).to_contain_text(f"Leased by {name}")
    expect(other.locator("#submit")).to_be_disabled()
    other.keyboard.press("c")  # shortcuts do nothing on a job someone else holds
    expect(other.locator('input[value="clear"]')).not_to_be_checked()
    shot(other, shots, "4-second-reviewer-sees-lease")
    second.close()

    # Every decision made by keyboard is in the audit log with its reviewer.
    for job_id, action in zip(jobs[:3], ("clear", "remove", "remove_ban"), strict=True):
        found = live.db.audit.find_one(
            {"target": _image(live, job_id), "action": f"review.{action}"}
        )
        assert found is not None and found["actor"] == name

    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    page.goto(live.review_url + "/")
    assert "/login" in page.url
    first.close()
    for job_id in parked:  # leave the queue as we found it
        parker.post(f"/api/v1/jobs/{job_id}/release")
    live.db.review_jobs.update_one({"_id": jobs[3]}, {"$set": {"lease_until": None}})


def _image(live: Live, job_id: str) -> str:
    return str(live.db.review_jobs.find_one({"_id": job_id})["image_id"])
