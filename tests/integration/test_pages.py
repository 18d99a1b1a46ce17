"""The no-JavaScript path a person takes: upload form → link form → share page → reveal → report.
Plus every service's /metrics, /healthz and /readyz."""

from __future__ import annotations

import re

import pytest

from tests.live import Live
from tests.unit.corpus import corpus_path

HTML = {"accept": "text/html,application/xhtml+xml"}


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def test_upload_share_reveal_and_report_with_plain_forms(live: Live) -> None:
    index = live.ingest.get("/")
    assert index.status_code == 200
    assert 'action="/upload"' in index.text and 'enctype="multipart/form-data"' in index.text

    page = live.ingest.post(
        "/upload", files={"file": ("phone.jpg", corpus_path("Landscape_6.jpg").read_bytes())}
    )
    assert page.status_code == 202 and page.headers["cache-control"] == "no-store"
    image_id, owner_token = hidden(page.text, "image_id"), hidden(page.text, "owner_token")
    links_base = str(live.links.base_url).rstrip("/")
    assert f'action="{links_base}/links/new"' in page.text
    assert live.wait_status(image_id) == "cleared"

    created = live.links.post(
        "/links/new",
        data={
            "image_id": image_id,
            "owner_token": owner_token,
            "max_views": "1",
            "expires_in": "600",
        },
    )
    assert created.status_code == 201, created.text
    url = re.search(r'<code id="share-url">([^<]+)</code>', created.text)
    assert url
    token = url.group(1).rsplit("/", 1)[1]

    share = live.links.get(f"/s/{token}", headers=HTML)
    assert f'action="/s/{token}/reveal"' in share.text and "<img" not in share.text

    revealed = live.links.post(f"/s/{token}/reveal", headers=HTML)
    assert revealed.status_code == 303  # post/redirect/get: a reload never re-posts
    view_url = revealed.headers["location"]
    assert view_url.startswith("/v/")
    page = live.links.get(view_url, headers=HTML)
    assert page.status_code == 200 and f'src="{view_url}/image"' in page.text
    image = live.links.get(f"{view_url}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert len(image.content) > 10_000
    reload = live.links.get(view_url, headers=HTML)  # the view was spent with its image
    assert reload.status_code == 410 and "<img" not in reload.text
    assert live.links.get(f"{view_url}/image").status_code == 410
    again = live.links.post(f"/s/{token}/reveal", headers=HTML)
    assert again.status_code == 410 and again.headers["content-type"].startswith("text/html")
    assert "used up" in again.text

    assert f'action="/s/{token}/report"' in share.text
    ended = live.links.get(f"/s/{token}", headers=HTML)  # used up, and still reportable
    assert ended.status_code == 410 and f'action="/s/{token}/report"' in ended.text
    report = live.links.post(
        f"/s/{token}/report", data={"reason": "harassment", "details": "not ok"}, headers=HTML
    )
    assert report.status_code == 201 and "Thank you" in report.text
    stored = live.db.reports.find_one({"image_id": image_id})
    assert stored and stored["reason"] == "harassment" and stored["state"] == "open"
    assert token not in str(stored) and len(stored["reporter"]) == 32
    assert "127.0.0.1" not in str(stored)
    job = live.db.review_jobs.find_one({"image_id": image_id, "state": "open"})
    assert job is not None and job["reasons"] == {"harassment": 1}  # in the reports queue
    page = live.review.get(f"/jobs/{job['_id']}")
    assert page.status_code == 200 and image_id in page.text and "not ok" in page.text


def test_upload_form_shows_a_readable_error(live: Live) -> None:
    broken = corpus_path("truncated_jpeg.jpg").read_bytes()
    page = live.ingest.post("/upload", files={"file": ("x.jpg", broken)})
    assert page.status_code == 422
    assert "text/html" in page.headers["content-type"] and "corrupt_image" in page.text


def test_report_api_validates_input(live: Live) -> None:
    bad = live.links.post("/api/v1/reports", json={"reason": "boredom", "image_id": "x"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    none = live.links.post("/api/v1/reports", json={"reason": "spam"})
    assert none.status_code == 400 and none.json()["code"] == "missing_target"
    unknown = live.links.post("/api/v1/reports", json={"reason": "spam", "image_id": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "image_not_found"
    nolink = live.links.post("/api/v1/reports", json={"reason": "spam", "link_token": "zz"})
    assert nolink.status_code == 404 and nolink.json()["code"] == "link_not_found"
    form = live.links.post("/s/zz/report", data={"reason": "bogus"}, headers=HTML)
    assert form.status_code == 422 and "text/html" in form.headers["content-type"]
    assert "invalid_request" in form.text


def test_review_console_has_no_public_report_intake(live: Live) -> None:
    for path in ("/api/v1/reports", "/report"):
        resp = live.review.post(path, json={"reason": "spam", "image_id": "x"})
        assert resp.status_code in (404, 405)


def test_bank_api_refuses_malformed_entries(live: Live) -> None:
    for bank, body, code in [
        ("Bad Bank!", {"hash": "0" * 16, "reason": "r"}, "invalid_bank"),
        ("ok", {"hash": "xyz", "reason": "r"}, "invalid_hash"),
        ("ok", {"hash": "0" * 16, "reason": "r", "signal_type": "md5"}, "unsupported_signal_type"),
    ]:
        resp = live.review.post(f"/api/v1/banks/{bank}/entries", json=body)
        assert resp.status_code == 400 and resp.json()["code"] == code


@pytest.mark.parametrize("service", ["ingest", "links", "review", "scanner"])
def test_every_service_exposes_health_and_metrics(live: Live, service: str) -> None:
    client = getattr(live, service)
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "# TYPE" in metrics.text


def test_pipeline_metrics_move(live: Live) -> None:
    before = live.scanner.get("/metrics").text
    resp = live.upload(corpus_path("DSCN0021.jpg").read_bytes())
    live.wait_status(resp.json()["image_id"])
    after = live.scanner.get("/metrics").text

    def value(text: str, series: str) -> float:
        m = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    count = 'chatpic_scanner_scan_seconds_count{stage="total"}'
    assert value(after, count) == value(before, count) + 1
    ingest = live.ingest.get("/metrics").text
    assert 'chatpic_ingest_uploads_total{code="",outcome="accepted"}' in ingest
    assert 'chatpic_http_requests_total{method="POST",route="/api/v1/images"' in ingest
