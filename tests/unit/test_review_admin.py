"""Admin pages without the stack: audit filters and CSV cells, and every admin template renders
(autoescaped, labelled, CSRF in every POST form) from plain data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from services.review import admin, csvcells
from services.review.auth import Reviewer, Role
from services.shared.errors import DomainError
from services.shared.pages import Pages

ME = Reviewer("root", Role.ADMIN, "tok-123")
AT = datetime(2026, 12, 3, 17, 5, 9, tzinfo=UTC)


def test_audit_filter_dates_are_whole_utc_days_or_exact_times() -> None:
    f = admin.audit_filter(" alice ", "", "img", "2026-12-01", "2026-12-03")
    assert f.actor == "alice" and f.target == "img"
    assert f.since == datetime(2026, 12, 1, tzinfo=UTC)
    assert f.until == datetime(2026, 12, 4, tzinfo=UTC)  # "to" includes its day
    assert f.query() == {
        "actor": "alice",
        "target": "img",
        "at": {"$gte": f.since, "$lt": f.until},
    }
    exact = admin.audit_filter("", "", "", "2026-12-01T10:30", "2026-12-01T12:00+01:00")
    assert exact.since == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    assert exact.until is not None and exact.until.utcoffset() == timedelta(hours=1)
    assert admin.audit_filter("", "", "", "", "").query() == {}
    with pytest.raises(DomainError) as err:
        admin.audit_filter("", "", "", "", "03/12/2026")
    assert err.value.code == "invalid_date" and err.value.data["field"] == "to"


def test_csv_cells_never_become_formulas() -> None:
    cell = csvcells.spreadsheet_text
    assert cell("=1+1") == "'=1+1"
    assert cell("-2") == "'-2" and cell("@x") == "'@x" and cell("+1") == "'+1"
    assert cell("\tx") == "'\tx" and cell("\rx") == "'\rx"
    assert cell("plain") == "plain" and cell(None) == "" and cell("'quoted") == "'quoted"
    assert cell("'=x") == "''=x"  # so that the import's restore_text gives back '=x
    for text in ("=1+1", "-2", "@x", "\tx", "plain", "'quoted", "''=x", "'=x", ""):
        assert csvcells.restore_text(cell(text)) == text, text
    assert admin._iso(AT) == "2026-12-03T17:05:09.000+00:00"


def _html(name: str, **ctx: object) -> str:
    return bytes(Pages("services.review").render(name, me=ME, **ctx).body).decode()


def _forms_have_csrf(html: str) -> None:
    posts = re.findall(r"<form[^>]*method=\"post\"[^>]*>", html, flags=re.I)
    assert posts and len(posts) == html.count('name="csrf_token" value="tok-123"')


def _labels_match_inputs(html: str) -> None:
    fors = set(re.findall(r'<label for="([^"]+)"', html))
    for control in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
        assert control in fors, f"#{control} has no label"


def test_banks_page_renders_escaped_with_labels() -> None:
    entry = {
        "_id": "e1",
        "bank": "b1",
        "signal_type": "phash",
        "hash": "ab" * 8,
        "reason": "<script>x</script>",
        "source": "list & co",
        "created_at": AT,
    }
    summary = admin.BankSummary("b1", {"phash": 1, "dhash": 0, "pdq": 0}, {"phash": 8}, 50)
    html = _html(
        "banks.html",
        banks=[summary],
        bank="b1",
        entries=admin.Page([entry], 2, has_next=True),
        signals=["phash", "dhash", "pdq"],
        notice={"done": "added", "n": 2, "dup": 0},
        error=None,
        form={"signal_type": "phash", "source": "manual", "bank": "b1"},
        import_form={"bank": "b1", "source": "csv-import"},
        page_url=lambda n: f"/banks?bank=b1&page={n}",
    )
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert "list &amp; co" in html and "2 live images taken down" in html
    assert 'rel="prev"' in html and 'rel="next"' in html
    assert "/banks/entries/e1/delete" in html and "/api/v1/banks/b1/export.csv" in html
    _forms_have_csrf(html)
    _labels_match_inputs(html)


def test_bank_form_errors_list_bad_lines() -> None:
    error = DomainError(
        "2 bad row(s)", code="invalid_csv", errors=[{"line": 3, "message": "bad <hash>"}]
    )
    html = _html(
        "banks.html",
        banks=[],
        bank="",
        entries=admin.Page([], 1, has_next=False),
        signals=["phash"],
        notice=None,
        error=error,
        form={"bank": "b", "hash": "zz", "reason": "r", "signal_type": "phash", "source": "s"},
        import_form={"bank": "b", "source": "s"},
        page_url=lambda n: "",
    )
    assert 'role="alert"' in html and "Line 3: bad &lt;hash&gt;" in html
    assert 'value="zz"' in html and "No banks yet" in html


def test_audit_and_evidence_pages_render() -> None:
    row = {
        "at": AT,
        "actor": "alice",
        "action": "evidence.view",
        "target": "img1",
        "reason": "why",
        "data": '{"k":1}',
    }
    given = {"actor": "alice", "action": "", "target": "", "from": "", "to": ""}
    html = _html(
        "audit.html",
        f=given,
        rows=admin.Page([row], 1, has_next=False),
        error=None,
        export_url="/audit/export.csv?actor=alice",
        page_url=lambda n: "",
        filter_url=lambda **one: "/audit?" + "&".join(f"{k}={v}" for k, v in one.items()),
        max_rows=100_000,
    )
    assert '<time datetime="2026-12-03T17:05:09+00:00">2026-12-03 17:05:09</time>' in html
    assert 'href="/audit?actor=alice"' in html and "100,000" in html
    _labels_match_inputs(html)

    image = {
        "_id": "img1",
        "created_at": AT,
        "verdict": {"reasons": ["hash_match"]},
        "evidence": {"expires_at": AT},
    }
    listing = _html(
        "evidence.html",
        held=admin.Page([image], 1, has_next=False),
        page_url=lambda n: "",
        viewing=None,
        error=None,
        min_reason=3,
    )
    assert "img1" in listing and 'minlength="3"' in listing
    _labels_match_inputs(listing)
    viewing = {"image": image, "reason": "a <b>", "src": "/api/v1/evidence/img1?reason=a+%3Cb%3E"}
    shown = _html("evidence.html", held=None, viewing=viewing, error=None, min_reason=3)
    assert '<img src="/api/v1/evidence/img1?reason=a+%3Cb%3E"' in shown
    assert "Reason given: a &lt;b&gt;" in shown
