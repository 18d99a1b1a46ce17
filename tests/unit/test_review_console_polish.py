"""Review console details a newcomer tripped on, without the stack: a decision notice shows once
(tests/browser/test_review_notice.py runs static/notice.js in Chromium), /favicon.ico is a
real icon and public, and the rooms queue labels reporters' notes apart from the chat."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from services.review import favicon, jobs
from services.review.auth import PUBLIC_PATHS, Reviewer, Role
from services.shared.pages import Pages

ME = Reviewer("alice", Role.REVIEWER, "tok-123")
NOTICE_JS = Path(__file__).parents[2] / "services" / "review" / "static" / "notice.js"
TEMPLATES = Path(__file__).parents[2] / "services" / "review" / "templates"


def test_every_notice_of_a_redirect_names_its_parameters_and_every_page_loads_the_script() -> None:
    for name in ("job.html", "queue.html", "rooms.html", "banks.html", "accounts.html"):
        text = (TEMPLATES / name).read_text()
        notices = re.findall(r'<[a-z]+ [^>]*id="notice"[^>]*>', text)
        assert notices and all("data-once=" in n for n in notices), name
    html = _html("rooms.html", done="dismiss", reports=[], queue={"depth": 0})
    assert 'id="notice" data-once="done">Decision recorded (dismiss)' in html
    assert '<script src="/assets/notice.js" defer></script>' in html
    assert '<link rel="icon" href="/favicon.ico">' in html


def test_the_favicon_is_a_real_icon_and_public() -> None:
    assert "/favicon.ico" in PUBLIC_PATHS
    assert {"/login", "/healthz", "/readyz", "/metrics", "/favicon.ico"} == PUBLIC_PATHS
    icon = Image.open(io.BytesIO(favicon.ICON))
    assert icon.format == "ICO" and icon.size == (16, 16)
    icon.load()
    assert favicon.CONTENT_TYPE == "image/x-icon" and len(favicon.ICON) < 1024


def _html(name: str, **ctx: object) -> str:
    defaults: dict[str, object] = {
        "request_path": "/rooms",
        "actions": ["remove_message", "mute", "dismiss"],
        "reasons": jobs.POLICY_REASONS,
    }
    page = Pages("services.review")
    page.env.filters.setdefault("age", jobs.human_age)
    return bytes(page.render(name, me=ME, **{**defaults, **ctx}).body).decode()


def _report(details: list[str]) -> dict[str, object]:
    return {
        "report_id": "rep1",
        "priority": 1,
        "reasons": ["harassment"],
        "reporters": 2,
        "details": details,
        "age_s": 30.0,
        "room": {"name": "lobby", "public": True, "members": 3},
        "message": {
            "nickname": "troll",
            "kind": "text",
            "text": "the reported words",
            "state": "visible",
            "nickname_muted": False,
        },
        "context": [{"nickname": "amy", "kind": "text", "text": "an earlier message"}],
    }


def test_rooms_queue_labels_reporters_notes_apart_from_the_chat() -> None:
    html = _html(
        "rooms.html", reports=[_report(["they keep at it", "<b>2nd</b>"])], queue={"depth": 1}
    )
    chat = html.index('<ol class="chat"')
    notes = html.index('<section class="details"')
    assert 'id="chat-rep1">In the room:' in html[:chat]
    assert 'aria-labelledby="chat-rep1"' in html[chat : chat + 60]
    section = html[notes : html.index("</section>", notes)]
    assert "From the reports, not the room:" in section
    items = re.findall(r'<li class="note">(.*?)</li>', section)
    assert items == [
        '<span class="badge">Reporter\'s note</span> <q>they keep at it</q>',
        '<span class="badge">Reporter\'s note</span> <q>&lt;b&gt;2nd&lt;/b&gt;</q>',
    ]
    assert "an earlier message" in html[chat:notes]  # the chat stays in its own list
    one = _html("rooms.html", reports=[_report(["just one"])], queue={"depth": 1})
    assert "From the report, not the room:" in one
    none = _html("rooms.html", reports=[_report([])], queue={"depth": 1})
    assert "Reporter's note" not in none and 'class="details"' not in none
