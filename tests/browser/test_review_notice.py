"""The review console's one-time notices in Chromium: static/notice.js drops the query
parameters a redirect's notice came from (data-once on #notice), so a reload or a bookmark does
not say "Decision recorded" again. The page is served by Playwright's router with the real
script, so no stack is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NOTICE_JS = (Path(__file__).parents[2] / "services" / "review" / "static" / "notice.js").read_text()
ORIGIN = "http://review.test"


def page_with(notice: str | None) -> str:
    body = (
        f'<p id="notice" data-once="{notice}">Decision recorded</p>' if notice is not None else ""
    )
    return f"<!doctype html><title>t</title>{body}<script>{NOTICE_JS}</script>"


def address_after_load(browser: Any, path: str, notice: str | None) -> str:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(
            f"{ORIGIN}/**",
            lambda route: route.fulfill(
                status=200, content_type="text/html", body=page_with(notice)
            ),
        )
        page.goto(ORIGIN + path)
        return str(page.evaluate("location.pathname + location.search + location.hash"))
    finally:
        context.close()


@pytest.mark.parametrize(
    ("path", "once", "expected"),
    [
        ("/?empty=reports&done=clear", "done empty", "/"),
        ("/jobs/j1?done=remove", "done", "/jobs/j1"),
        ("/rooms?done=dismiss#report-9", "done", "/rooms#report-9"),
        ("/banks?bank=b-1&done=imported&n=3&dup=0", "done n dup", "/banks?bank=b-1"),
        ("/accounts?done=disabled", "done", "/accounts"),
        # Nothing to drop: no notice on the page, or none of its parameters in the address.
        ("/?done=clear", None, "/?done=clear"),
        ("/banks?bank=b", "done n dup", "/banks?bank=b"),
    ],
)
def test_a_notice_from_a_redirect_drops_its_parameters_from_the_address(
    browser: Any, path: str, once: str | None, expected: str
) -> None:
    assert address_after_load(browser, path, once) == expected
