"""The admin pages in a real browser, without a mouse: add a bank entry, import a CSV, remove an
entry with a reason, filter the audit log, view a blocked image's evidence with a reason. Focus
is visible wherever the keyboard lands.

Screenshots land in /tmp/chatpic-shots/ (CHATPIC_SHOTS) for a person to look at."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from services.shared.mongo import BlobStore
from tests.browser.conftest import DESKTOP
from tests.browser.test_review_console import log_in, press_and_wait, shot
from tests.live import Live

PHASH = "202402d9e16b004a"  # far from every corpus image (tests/integration/test_bank_api.py)
DHASH = "e545e4ef0b72567e"
FOCUS_RING = "() => getComputedStyle(document.activeElement).outlineStyle"


def _evidence_image(live: Live) -> str:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "JPEG")
    vault_id = BlobStore(live.db, "evidence").put(out.getvalue(), "image/jpeg")
    image_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    live.db.images.insert_one(
        {
            "_id": image_id,
            "status": "blocked",
            "blob_id": None,
            "created_at": now,
            "scanned_at": now,
            "verdict": {"reasons": ["hash_match"]},
            "evidence": {
                "blob_id": vault_id,
                "content_type": "image/jpeg",
                "expires_at": now + timedelta(days=30),
                "purged_at": None,
            },
        }
    )
    return image_id


def test_admin_pages_by_keyboard(browser: Any, live: Live, shots: Path) -> None:
    from playwright.sync_api import expect

    name = f"adm-{uuid.uuid4().hex[:6]}"
    _, password = live.create_reviewer(name, role="admin")
    bank = f"kbd-{uuid.uuid4().hex[:6]}"
    context = browser.new_context(**DESKTOP)
    page = log_in(context, live, name, password)

    page.goto(f"{live.review_url}/banks")
    page.keyboard.press("Tab")  # the first stop is the console's navigation
    assert page.evaluate(FOCUS_RING) != "none"

    # Add an entry: type into the labelled fields, Enter submits.
    page.locator("#add-bank").focus()
    page.keyboard.type(bank)
    page.keyboard.press("Tab")  # the signal type select: keep pHash
    page.keyboard.press("Tab")
    page.keyboard.type(PHASH)
    page.keyboard.press("Tab")
    page.keyboard.type("seen in a report")
    press_and_wait(page, "Enter")
    expect(page.locator("#notice")).to_contain_text("Entry added. 0 live images taken down")
    expect(page.locator("#entries")).to_contain_text("seen in a report")
    shot(page, shots, "admin-1-banks")

    # Import a CSV: the file input takes a file; the Import button is reached by keyboard.
    page.locator("#import-bank").fill(bank)
    page.locator("#import-file").set_input_files(
        {
            "name": "bank.csv",
            "mimeType": "text/csv",
            "buffer": f"dhash,{DHASH},{bank},from a shared list\n".encode(),
        }
    )
    page.locator("#import-file").focus()
    press_and_wait(page, "Tab", "Enter")
    expect(page.locator("#notice")).to_contain_text("Imported 1 entry")
    assert live.db.bank_entries.count_documents({"bank": bank}) == 2

    # Remove the pHash entry: its link, then the confirmation page asks why.
    remove = page.get_by_role("link", name=f"Remove… the phash entry {PHASH[:12]} from {bank}")
    remove.focus()
    assert page.evaluate(FOCUS_RING) != "none"
    press_and_wait(page, "Enter")
    expect(page.locator("#remove-reason")).to_be_focused()
    page.keyboard.type("false positive")
    shot(page, shots, "admin-2-remove")
    press_and_wait(page, "Enter")
    expect(page.locator("#notice")).to_contain_text("Entry removed")
    assert live.db.bank_entries.count_documents({"bank": bank}) == 1

    # The audit log, filtered to this admin: three bank changes, newest first.
    page.goto(f"{live.review_url}/audit")
    page.get_by_label("Actor").fill(name)
    press_and_wait(page, "Enter")
    cells = page.locator("#audit tbody tr td:nth-child(3)").all_inner_texts()
    actions = [c.split("\n")[0] for c in cells]  # without the screen-reader hint
    assert actions == ["bank.remove", "bank.import", "bank.add"]
    shot(page, shots, "admin-3-audit")

    # The evidence vault: a reason, Enter, and the image is shown; the view is audited.
    image_id = _evidence_image(live)
    page.goto(f"{live.review_url}/evidence")
    page.get_by_label(f"Reason for viewing image {image_id}").fill("appeal check")
    press_and_wait(page, "Enter")
    img = page.get_by_role("img", name=f"Evidence held for blocked image {image_id}")
    expect(img).to_be_visible()
    page.wait_for_function("() => document.querySelector('.evidence img').naturalWidth === 64")
    shot(page, shots, "admin-4-evidence")
    record = live.db.audit.find_one({"target": image_id, "action": "evidence.view"})
    assert record["actor"] == name and record["reason"] == "appeal check"
    context.close()
