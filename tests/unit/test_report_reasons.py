"""Every report form (share and end pages, gallery cards, rooms) offers the same reasons,
worded once in services.shared.reports, and each is one the intake accepts."""

from __future__ import annotations

import re
from types import SimpleNamespace

from services.shared.pages import Pages
from services.shared.reports import REASON_LABELS, ReportReason

OPTION = re.compile(r'<option value="([a-z_]+)">([^<]+)</option>')


def test_every_reason_has_one_label() -> None:
    assert set(REASON_LABELS) == set(ReportReason)
    assert len(set(REASON_LABELS.values())) == len(ReportReason)


def test_links_report_form_offers_every_reason() -> None:
    html = (
        Pages("services.links")
        .env.get_template("_report.html")
        .render(target=SimpleNamespace(report="/s/tok/report"))
    )
    assert OPTION.findall(html) == [(r.value, label) for r, label in REASON_LABELS.items()]


def test_rooms_page_offers_every_reason() -> None:
    source = Pages("services.rooms").env.loader.get_source(  # type: ignore[union-attr]
        Pages("services.rooms").env, "room.html"
    )[0]
    template = Pages("services.rooms").env.from_string(
        re.search(r'<template id="reasons">.*?</template>', source).group(0)  # type: ignore[union-attr]
    )
    html = template.render(report_reasons=Pages("services.rooms").env.globals["report_reasons"])
    assert OPTION.findall(html) == [(r.value, label) for r, label in REASON_LABELS.items()]
