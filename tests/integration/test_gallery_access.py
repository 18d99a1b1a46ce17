"""Who may get what from the gallery, on the real stack: thumbnails (bytes, no EXIF, refused
with a code when not allowed, never to bots), the /g/ page and its reveal (spends a view of the
same link), reports from a card landing in the review queue, and the gallery metrics."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.integration.links_helpers import cleared_upload, make_link, unique_photo
from tests.live import Live

HTML = {"Accept": "text/html"}
BOTS = [
    {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
    {"User-Agent": "facebookexternalhit/1.1"},
    {"Sec-Purpose": "prefetch"},
]


def public_link(live: Live, seed: int, category: str = "nature", **options: Any) -> dict[str, Any]:
    image = cleared_upload(live, unique_photo(seed))
    link = make_link(live, image, gallery_category=category, **options)
    link["owner_token"] = image[1]
    return link


def pid(link: dict[str, Any]) -> str:
    return str(link["gallery"]["public_id"])


def test_thumbnails_are_real_images_without_metadata_and_count_no_view(live: Live) -> None:
    link = public_link(live, 8001, max_views=2)
    resp = live.links.get(f"/gallery/thumbs/{pid(link)}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/jpeg"
    assert resp.headers["cache-control"] == "private, max-age=60"
    assert resp.headers["x-content-type-options"] == "nosniff"
    img = Image.open(io.BytesIO(resp.content))
    img.load()
    assert img.format == "JPEG" and max(img.size) > 0
    assert not img.getexif() and "exif" not in img.info and "icc_profile" not in img.info
    stored = live.db.images.find_one({"_id": link["image_id"]})
    assert resp.content != b"" and stored["thumb_blob_id"]
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 0


def test_thumbnails_are_refused_with_a_code_when_not_allowed(live: Live) -> None:
    unknown = live.links.get(f"/gallery/thumbs/{'0' * 32}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "link_not_found"
    assert live.links.get(f"/gallery/thumbs/{'x' * 300}").status_code == 404

    held = public_link(live, 8010)
    for bot in BOTS:
        resp = live.links.get(f"/gallery/thumbs/{pid(held)}", headers=bot)
        assert resp.status_code == 403 and resp.json()["code"] == "automated_request"
        assert not resp.headers["content-type"].startswith("image/")
    live.db.images.update_one({"_id": held["image_id"]}, {"$set": {"status": "review"}})
    resp = live.links.get(f"/gallery/thumbs/{pid(held)}")
    assert resp.status_code == 451 and resp.json()["code"] == "removed"
    live.db.images.update_one({"_id": held["image_id"]}, {"$set": {"status": "pending"}})
    assert live.links.get(f"/gallery/thumbs/{pid(held)}").status_code == 451

    revoked = public_link(live, 8011)
    live.links.delete(
        f"/api/v1/links/{revoked['link_id']}",
        headers={"Authorization": f"Bearer {revoked['owner_token']}"},
    )
    resp = live.links.get(f"/gallery/thumbs/{pid(revoked)}")
    assert resp.status_code == 410 and resp.json()["code"] == "revoked"

    used = public_link(live, 8012, max_views=1)
    assert live.links.post(f"/g/{pid(used)}/reveal").status_code == 200
    resp = live.links.get(f"/gallery/thumbs/{pid(used)}")
    assert resp.status_code == 410 and resp.json()["code"] == "used_up"

    thumbless = public_link(live, 8013)
    live.db.images.update_one({"_id": thumbless["image_id"]}, {"$set": {"thumb_blob_id": None}})
    resp = live.links.get(f"/gallery/thumbs/{pid(thumbless)}")
    assert resp.status_code == 404 and resp.json()["code"] == "no_thumbnail"


def test_reveal_through_the_gallery_spends_a_view_of_the_same_link(live: Live) -> None:
    link = public_link(live, 8020, max_views=1)
    page = live.links.get(f"/g/{pid(link)}", headers=HTML)
    assert page.status_code == 200
    assert "1 view left" in page.text and f'action="/g/{pid(link)}/reveal"' in page.text
    assert f'action="/gallery/{pid(link)}/report"' in page.text
    assert "public gallery" in page.text
    granted = live.links.post(f"/g/{pid(link)}/reveal")
    assert granted.status_code == 200, granted.text
    assert granted.json()["views_left"] == 0
    image = live.links.get(granted.json()["image_url"])
    assert image.status_code == 200 and image.content.startswith(b"\xff\xd8\xff")
    again = live.links.post(f"/g/{pid(link)}/reveal")
    assert again.status_code == 410 and again.json()["code"] == "used_up"
    # The share token and the gallery entry are one link: its views are spent.
    by_token = live.links.post(f"/s/{link['token']}/reveal")
    assert by_token.status_code == 410 and by_token.json()["code"] == "used_up"
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 1
    ended = live.links.get(f"/g/{pid(link)}", headers=HTML)
    assert ended.status_code == 410 and "used_up" in ended.text
    assert f'action="/gallery/{pid(link)}/report"' in ended.text  # still reportable


def test_browsers_are_redirected_and_bots_spend_nothing(live: Live) -> None:
    link = public_link(live, 8030, max_views=3)
    for bot in BOTS:
        card = live.links.get(f"/g/{pid(link)}", headers={**HTML, **bot})
        assert card.status_code == 200 and "Reveal" not in card.text
        refused = live.links.post(f"/g/{pid(link)}/reveal", headers=bot)
        assert refused.status_code == 403 and refused.json()["code"] == "automated_request"
    browser = live.links.post(f"/g/{pid(link)}/reveal", headers=HTML, follow_redirects=False)
    assert browser.status_code == 303 and browser.headers["location"].startswith("/v/")
    assert live.db.links.find_one({"link_id": link["link_id"]})["views"] == 1
    missing = live.links.post(f"/g/{'0' * 32}/reveal")
    assert missing.status_code == 404 and missing.json()["code"] == "link_not_found"


def test_a_report_from_the_gallery_lands_a_job_in_review(live: Live) -> None:
    link = public_link(live, 8040)
    resp = live.links.post(
        f"/api/v1/gallery/{pid(link)}/reports",
        json={"reason": "spam", "details": "seen in the gallery"},
    )
    assert resp.status_code == 201, resp.text
    report = live.db.reports.find_one({"_id": resp.json()["report_id"]})
    assert report["image_id"] == link["image_id"] and report["reason"] == "spam"
    job = live.db.review_jobs.find_one(
        {"image_id": link["image_id"], "kind": "reports", "state": "open"}
    )
    assert job is not None and len(job["reporters"]) == 1

    form = live.links.post(
        f"/gallery/{pid(link)}/report", data={"reason": "violence"}, headers=HTML
    )
    assert form.status_code == 201 and "Report sent" in form.text
    assert live.db.reports.count_documents({"image_id": link["image_id"]}) == 2

    unknown = live.links.post(f"/api/v1/gallery/{'0' * 32}/reports", json={"reason": "spam"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "entry_not_found"
    bad = live.links.post(f"/api/v1/gallery/{pid(link)}/reports", json={"reason": "nope"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    page = live.links.post(f"/gallery/{'0' * 32}/report", data={"reason": "spam"}, headers=HTML)
    assert page.status_code == 404 and "entry_not_found" in page.text


def test_gallery_metrics_are_exported(live: Live) -> None:
    link = public_link(live, 8050)
    live.links.get("/gallery", headers=HTML)
    live.links.get("/api/v1/gallery", params={"category": "nature"})
    live.links.get(f"/gallery/thumbs/{pid(link)}")
    live.links.post(f"/api/v1/gallery/{pid(link)}/reports", json={"reason": "other"})
    text = live.links.get("/metrics").text
    assert 'chatpic_links_gallery_pages_total{kind="html",scope="all"}' in text
    assert 'chatpic_links_gallery_pages_total{kind="api",scope="category"}' in text
    assert 'chatpic_links_gallery_thumbnails_total{outcome="served"}' in text
    assert 'chatpic_links_gallery_reports_total{reason="other"}' in text
    assert 'chatpic_links_created_total{kind="gallery"}' in text
    assert link["gallery"]["public_id"] not in text
