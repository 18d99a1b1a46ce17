"""Admin pages of the review console on the real stack: banks (list, add with retroactive
takedown, remove, CSV import/export), the audit log (filters, paging, CSV export that is itself
audited) and the evidence vault (reason required, every view audited). Reviewers get 403.

``live.review`` is a logged-in admin whose client sends the session's CSRF header."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.shared.mongo import BlobStore
from services.shared.repos import AuditRepo
from tests.integration.links_helpers import cleared_upload, make_link, unique_photo
from tests.live import ADMIN_USERNAME, Live

# From tests/integration/test_bank_api.py: far (≥21 bits, ≥96 bits) from every corpus image.
PHASH = "202402d9e16b004a"
DHASH = "e545e4ef0b72567e"
PDQ = "5d1949bfe569c17f8b20c88415e94b564f302b5e456257924f6f01842cc39122"
HEADER = "signal_type,hash,bank,reason\n"


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin_name(live: Live) -> str:
    return ADMIN_USERNAME


def csrf_from(page: httpx.Response) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert found, "the page carries the session's CSRF token"
    return found.group(1)


def test_banks_page_lists_an_entry_added_through_the_api(live: Live) -> None:
    bank, source = fresh("adm"), fresh("list")
    added = live.review.post(
        f"/api/v1/banks/{bank}/entries",
        json={
            "hash": DHASH,
            "signal_type": "dhash",
            "reason": "seen <b>twice</b>",
            "source": source,
        },
    )
    assert added.status_code == 201, added.text

    page = live.review.get("/banks", params={"bank": bank})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert source in html and DHASH in html
    assert "seen &lt;b&gt;twice&lt;/b&gt;" in html and "<b>twice" not in html  # autoescaped
    assert f'href="/api/v1/banks/{bank}/export.csv"' in html  # export link per bank
    assert f"/banks/entries/{added.json()['entry_id']}/delete" in html
    # Accessible structure: captions, header cells, labelled controls, CSRF in every POST form.
    assert "<caption>" in html and '<th scope="col">Hash</th>' in html
    assert '<label for="add-hash">' in html and 'id="add-hash"' in html
    assert html.count('name="csrf_token"') >= 2
    posts = re.findall(r'method="post"', html, flags=re.IGNORECASE)
    assert len(posts) == html.count('name="csrf_token"')


def test_add_via_form_takes_down_a_live_copy(live: Live) -> None:
    image_id, _ = image = cleared_upload(live, unique_photo(seed=606))
    link = make_link(live, image, max_views=3)
    phash = live.db.images.find_one({"_id": image_id})["verdict"]["hashes"]["phash"]
    bank, reason = fresh("adm"), fresh("known abuse")

    resp = live.review.post(
        "/banks/entries",
        data={"bank": bank, "signal_type": "phash", "hash": phash.upper(), "reason": reason},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == f"/banks?bank={bank}&done=added&n=1"
    assert live.db.images.find_one({"_id": image_id})["status"] == "removed"
    revealed = live.links.post(f"/s/{link['token']}/reveal")
    assert revealed.status_code == 451 and revealed.json()["code"] == "removed"

    entry = live.db.bank_entries.find_one({"bank": bank})
    assert entry["hash"] == phash and entry["source"] == "manual" and entry["reason"] == reason
    record = live.db.audit.find_one({"action": "bank.add", "target": entry["_id"]})
    assert record["actor"] == admin_name(live) and record["reason"] == reason
    assert record["taken_down"] == [image_id]
    page = live.review.get(resp.headers["location"])
    assert "1 live image taken down" in page.text

    # A refusal re-renders the form with what was typed and says why.
    bad = live.review.post(
        "/banks/entries",
        data={"bank": bank, "signal_type": "phash", "hash": "abc", "reason": "keep me"},
    )
    assert bad.status_code == 400 and 'role="alert"' in bad.text
    assert "invalid_hash" in bad.text and 'value="keep me"' in bad.text
    assert live.db.bank_entries.count_documents({"bank": bank}) == 1


def test_remove_via_form_needs_a_reason_and_is_audited(live: Live) -> None:
    bank = fresh("adm")
    entry_id = live.review.post(
        f"/api/v1/banks/{bank}/entries", json={"hash": PHASH, "reason": "to remove"}
    ).json()["entry_id"]

    confirm = live.review.get(f"/banks/entries/{entry_id}/delete")
    assert confirm.status_code == 200 and PHASH in confirm.text
    assert '<label for="remove-reason">' in confirm.text

    refused = live.review.post(f"/banks/entries/{entry_id}/delete", data={"reason": " "})
    assert refused.status_code == 400 and "missing_reason" in refused.text
    assert live.db.bank_entries.count_documents({"_id": entry_id}) == 1

    resp = live.review.post(
        f"/banks/entries/{entry_id}/delete",
        data={"reason": "false positive"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == f"/banks?bank={bank}&done=removed"
    assert live.db.bank_entries.count_documents({"_id": entry_id}) == 0
    record = live.db.audit.find_one({"action": "bank.remove", "target": entry_id})
    assert record["reason"] == "false positive" and record["actor"] == admin_name(live)
    assert record["hash"] == PHASH and record["bank"] == bank

    again = live.review.post(f"/banks/entries/{entry_id}/delete", data={"reason": "again"})
    assert again.status_code == 404 and again.json()["code"] == "entry_not_found"


def test_csv_import_via_form_then_export(live: Live) -> None:
    bank = fresh("adm")
    text = (
        HEADER
        + f"phash,{PHASH},{bank},known photo\n"
        + f'dhash,{DHASH},{bank},"quoted, with a comma"\n'
        + f"pdq,{PDQ},,empty bank cell\n"
    )
    resp = live.review.post(
        "/banks/import",
        data={"bank": bank, "source": "it-form-import"},
        files={"file": ("bank.csv", text.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == f"/banks?bank={bank}&done=imported&n=3&dup=0"
    docs = list(live.db.bank_entries.find({"bank": bank}))
    assert len(docs) == 3 and {d["source"] for d in docs} == {"it-form-import"}
    record = live.db.audit.find_one({"action": "bank.import", "target": bank})
    assert record["imported"] == 3 and record["actor"] == admin_name(live)

    page = live.review.get(resp.headers["location"])
    assert "Imported 3 entries" in page.text and "it-form-import" in page.text
    exported = live.review.get(f"/api/v1/banks/{bank}/export.csv")
    assert exported.status_code == 200
    assert exported.text == text.replace(",,empty", f",{bank},empty")

    # The same file again adds nothing; a bad file is refused whole, with its line numbers.
    again = live.review.post(
        "/banks/import",
        data={"bank": bank},
        files={"file": ("bank.csv", text.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert again.headers["location"].endswith("done=imported&n=0&dup=3")
    bad = HEADER + f"phash,{PHASH[:-1]},{bank},short\nmd5,{PHASH},{bank},unknown\n"
    refused = live.review.post(
        "/banks/import",
        data={"bank": bank, "source": "it-bad"},
        files={"file": ("bad.csv", bad.encode(), "text/csv")},
    )
    assert refused.status_code == 400 and "invalid_csv" in refused.text
    assert "Line 2:" in refused.text and "Line 3:" in refused.text
    assert live.db.bank_entries.count_documents({"bank": bank}) == 3


def _seed_audit(live: Live, actor: str, n: int) -> None:
    repo = AuditRepo(live.db)
    for i in range(n):
        repo.record("it.check" if i % 2 else "it.other", actor, f"target-{i}", f"why {i}", i=i)


def test_audit_page_filters_by_actor_action_and_dates(live: Live) -> None:
    actor = fresh("auditor")
    _seed_audit(live, actor, 55)
    other = fresh("auditor")
    _seed_audit(live, other, 2)

    first = live.review.get("/audit", params={"actor": actor})
    assert first.status_code == 200, first.text
    rows = re.findall(r"<td>why (\d+)</td>", first.text)
    assert rows == [str(i) for i in range(54, 4, -1)]  # newest first, 50 a page
    assert other not in first.text
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = live.review.get("/audit", params={"actor": actor, "page": 2})
    assert re.findall(r"<td>why (\d+)</td>", second.text) == ["4", "3", "2", "1", "0"]
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text

    by_action = live.review.get("/audit", params={"actor": actor, "action": "it.check"})
    found = re.findall(r"<td>why (\d+)</td>", by_action.text)
    assert len(found) == 27 and all(int(i) % 2 for i in found)
    by_target = live.review.get("/audit", params={"actor": actor, "target": "target-7"})
    assert re.findall(r"<td>why (\d+)</td>", by_target.text) == ["7"]

    today = datetime.now(UTC).date()
    within = live.review.get(
        "/audit", params={"actor": actor, "from": str(today), "to": str(today)}
    )
    assert len(re.findall(r"<td>why (\d+)</td>", within.text)) == 50
    tomorrow = str(today + timedelta(days=1))
    later = live.review.get("/audit", params={"actor": actor, "from": tomorrow})
    assert re.findall(r"<td>why (\d+)</td>", later.text) == []
    bad = live.review.get("/audit", params={"from": "31/12/2026"})
    assert bad.status_code == 400 and "invalid_date" in bad.text
    # Filter inputs are labelled and keep their values.
    assert '<label for="f-actor">' in first.text and f'value="{actor}"' in first.text


def test_audit_csv_export_and_the_export_is_audited(live: Live) -> None:
    actor = fresh("exporter")
    repo = AuditRepo(live.db)
    repo.record("it.decide", actor, "img-1", '=HYPERLINK("x")', queue="reports", n=2)
    repo.record("it.decide", actor, "img-2", "plain, with a comma")

    resp = live.review.get("/audit/export.csv", params={"actor": actor})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["at", "actor", "action", "target", "reason", "data"]
    assert [r[3] for r in rows[1:]] == ["img-2", "img-1"]  # newest first
    newest, oldest = rows[1], rows[2]
    assert newest[1:5] == [actor, "it.decide", "img-2", "plain, with a comma"] and newest[5] == ""
    assert oldest[4] == '\'=HYPERLINK("x")'  # never a live formula in a spreadsheet
    assert json.loads(oldest[5]) == {"queue": "reports", "n": 2}
    assert datetime.fromisoformat(oldest[0]).tzinfo is not None

    record = live.db.audit.find_one({"action": "audit_export", "filters.actor": actor})
    assert record is not None and record["actor"] == admin_name(live)
    assert record["rows"] == 2 and record["truncated"] is False
    page = live.review.get("/audit", params={"action": "audit_export", "actor": admin_name(live)})
    assert "audit_export" in page.text and actor in page.text  # the filters, in the details


def _blocked_image_with_evidence(live: Live) -> str:
    vault_id = BlobStore(live.db, "evidence").put(b"\xff\xd8\xffevidence-bytes", "image/jpeg")
    image_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    live.db.images.insert_one(
        {
            "_id": image_id,
            "status": "blocked",
            "blob_id": None,
            "created_at": now,
            "scanned_at": now,
            "verdict": {"reasons": ["hash_match"], "match": {"bank": "it-evidence"}},
            "evidence": {
                "blob_id": vault_id,
                "thumb_blob_id": None,
                "content_type": "image/jpeg",
                "expires_at": now + timedelta(days=30),
                "purged_at": None,
            },
        }
    )
    return image_id


def test_evidence_page_lists_blocked_images_and_views_need_a_reason(live: Live) -> None:
    image_id = _blocked_image_with_evidence(live)
    listing = live.review.get("/evidence")
    assert listing.status_code == 200, listing.text
    assert image_id in listing.text and "hash_match" in listing.text
    assert 'action="/evidence/view"' in listing.text and "required" in listing.text

    refused = live.review.get("/evidence/view", params={"image_id": image_id, "reason": " x "})
    assert refused.status_code == 400 and "reason_required" in refused.text
    assert "<img" not in refused.text
    assert live.db.audit.count_documents({"target": image_id}) == 0

    shown = live.review.get(
        "/evidence/view", params={"image_id": image_id, "reason": "appeal <check>"}
    )
    assert shown.status_code == 200, shown.text
    src = re.search(r'<img src="([^"]+)"', shown.text)
    assert src is not None
    url = src.group(1).replace("&amp;", "&")
    assert url == f"/api/v1/evidence/{image_id}?reason=appeal+%3Ccheck%3E"
    assert live.db.audit.count_documents({"target": image_id}) == 0  # the page shows no bytes

    image = live.review.get(url)
    assert image.status_code == 200 and image.content.startswith(b"\xff\xd8\xff")
    record = live.db.audit.find_one({"target": image_id, "action": "evidence.view"})
    assert record["reason"] == "appeal <check>" and record["actor"] == admin_name(live)

    missing = live.review.get("/evidence/view", params={"image_id": "nope", "reason": "look"})
    assert missing.status_code == 404 and missing.json()["code"] == "evidence_not_found"
    live.db.images.update_one(
        {"_id": image_id}, {"$set": {"evidence.purged_at": datetime.now(UTC)}}
    )
    assert image_id not in live.review.get("/evidence").text  # purged evidence is not listed


def test_a_form_post_with_the_token_in_the_form_works_and_without_it_is_refused(
    live: Live,
) -> None:
    """The way a browser posts: session cookie plus the form's hidden csrf_token field."""
    bank = fresh("adm")
    token = csrf_from(live.review.get("/banks"))
    with httpx.Client(base_url=str(live.review.base_url), cookies=live.review.cookies) as browser:
        form = {"bank": bank, "signal_type": "phash", "hash": PHASH, "reason": "csrf check"}
        refused = browser.post("/banks/entries", data=form)
        assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
        assert live.db.bank_entries.count_documents({"bank": bank}) == 0
        ok = browser.post(
            "/banks/entries", data={**form, "csrf_token": token}, follow_redirects=False
        )
        assert ok.status_code == 303, ok.text
    assert live.db.bank_entries.count_documents({"bank": bank}) == 1


ADMIN_ROUTES = [
    ("GET", "/banks"),
    ("GET", "/banks/entries/some-id/delete"),
    ("POST", "/banks/entries"),
    ("POST", "/banks/entries/some-id/delete"),
    ("POST", "/banks/import"),
    ("GET", "/audit"),
    ("GET", "/audit/export.csv"),
    ("GET", "/evidence"),
    ("GET", "/evidence/view?image_id=x&reason=look"),
]


@pytest.fixture(scope="module")
def reviewer(live: Live) -> tuple[httpx.Client, str]:
    name = fresh("rev")
    client, _ = live.create_reviewer(name)
    return client, name


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_reviewers_get_403_and_strangers_a_login(
    live: Live, reviewer: tuple[httpx.Client, str], method: str, path: str
) -> None:
    client, name = reviewer
    form = {"reason": "r", "bank": "x", "hash": PHASH} if method == "POST" else None
    resp = client.request(method, path, data=form)
    assert resp.status_code == 403, resp.text
    assert resp.json()["code"] == "admin_only"
    anon = live.review_anon.request(method, path, data=form, follow_redirects=False)
    if method == "GET":
        assert anon.status_code == 303
        assert anon.headers["location"].startswith("/login?next=")
    else:
        assert anon.status_code in (303, 401, 403)
    assert live.db.audit.count_documents({"actor": name}) == 0  # nothing happened as them
