"""The public gallery's listing on the real stack: public cleared images appear in their category
and in /gallery, newest first, paged by a cursor; private, not-cleared and ended entries never
appear; options are validated with codes; the upload page offers the categories."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.links_helpers import cleared_upload, make_link, unique_photo
from tests.live import Live

HTML = {"Accept": "text/html"}


def public_link(live: Live, seed: int, category: str, **options: Any) -> dict[str, Any]:
    image = cleared_upload(live, unique_photo(seed))
    link = make_link(live, image, gallery_category=category, **options)
    link["owner_token"] = image[1]
    return link


def listed(live: Live, category: str | None = None, before: str | None = None) -> dict[str, Any]:
    params = {k: v for k, v in (("category", category), ("before", before)) if v}
    resp = live.links.get("/api/v1/gallery", params=params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def public_ids(live: Live, category: str | None = None) -> list[str]:
    return [e["public_id"] for e in listed(live, category)["entries"]]


def test_public_cleared_images_appear_in_their_category_and_in_all_newest_first(
    live: Live,
) -> None:
    first = public_link(live, 7001, "nature", max_views=5)
    second = public_link(live, 7002, "nature", max_views=5)
    other = public_link(live, 7003, "memes")
    a, b, c = (x["gallery"]["public_id"] for x in (first, second, other))
    assert first["gallery"]["category"] == "nature" and first["gallery"]["url"].endswith(f"/g/{a}")
    stored = live.db.links.find_one({"link_id": first["link_id"]})["gallery"]
    assert stored["public_id"] == a and stored["category"] == "nature"
    assert a not in (first["link_id"], first["token"])

    nature = public_ids(live, "nature")
    assert nature.index(b) < nature.index(a)  # newest first
    assert c not in nature
    assert c in public_ids(live, "memes") and a not in public_ids(live, "memes")
    everything = public_ids(live)
    assert everything.index(c) < everything.index(b) < everything.index(a)

    body = listed(live, "nature")
    entry = next(e for e in body["entries"] if e["public_id"] == a)
    assert entry["category"] == "nature" and entry["views_left"] == 5
    assert entry["url"] == f"/g/{a}" and entry["thumbnail_url"] == f"/gallery/thumbs/{a}"
    assert "image_id" not in entry and "token" not in entry and "link_id" not in entry

    page = live.links.get("/gallery/nature", headers=HTML)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert f'href="/g/{a}"' in html and f'src="/gallery/thumbs/{a}"' in html
    assert html.index(f"/g/{b}") < html.index(f"/g/{a}") and f"/g/{c}" not in html
    assert f'action="/gallery/{a}/report"' in html and "just now" in html
    all_page = live.links.get("/gallery", headers=HTML).text
    assert f"/g/{a}" in all_page and f"/g/{c}" in all_page


def synthetic_entries(live: Live, image_id: str, n: int, base: datetime) -> list[str]:
    """Gallery entries written straight into the links collection (one cleared image may not
    be listed twice through the API), listed long ago so no other test's entries mix in."""
    far = datetime.now(UTC) + timedelta(hours=1)
    ids = []
    for i in range(n):
        public_id = secrets.token_hex(16)
        listed_at = base + timedelta(seconds=i // 2)  # pairs share a millisecond: ties
        live.db.links.insert_one(
            {
                "_id": secrets.token_hex(32),
                "link_id": secrets.token_hex(16),
                "image_id": image_id,
                "expires_at": far,
                "alive_until": far,
                "max_views": 3,
                "remaining": 3,
                "views": 0,
                "gallery": {
                    "category": "wallpapers",
                    "public_id": public_id,
                    "listed_at": listed_at,
                },
                "purge_at": far,
                "created_at": datetime.now(UTC),
            }
        )
        ids.append(public_id)
    return ids


def test_paging_with_the_cursor_shows_24_then_the_rest_without_gaps_or_repeats(
    live: Live,
) -> None:
    image = cleared_upload(live, unique_photo(7010))
    make_link(live, image)  # keeps the image's bytes while the test runs
    base = datetime(2001, 1, 1, tzinfo=UTC)
    ids = synthetic_entries(live, image[0], 30, base)
    expected = sorted(
        ids,
        key=lambda p: (live.db.links.find_one({"gallery.public_id": p})["gallery"]["listed_at"], p),
        reverse=True,
    )
    start = "2001-01-02T00:00:00Z"  # nothing else in the gallery is that old
    one = listed(live, "wallpapers", before=start)
    assert len(one["entries"]) == 24 and one["older"]
    two = listed(live, "wallpapers", before=one["older"])
    assert len(two["entries"]) == 6 and two["older"] is None
    got = [e["public_id"] for e in one["entries"] + two["entries"]]
    assert got == expected
    assert live.links.get(one["older_url"]).json()["entries"] == two["entries"]
    # The all-categories listing pages the same way.
    mixed = listed(live, None, before=start)
    assert [e["public_id"] for e in mixed["entries"]] == expected[:24]

    # HTML: 24 cards and an "Older" link that leads to the other 6.
    page = live.links.get("/gallery/wallpapers", params={"before": start}, headers=HTML)
    assert page.status_code == 200
    assert page.text.count('class="tile"') == 24
    older = re.search(r'id="older" href="([^"]+)"', page.text)
    assert older is not None
    rest = live.links.get("/gallery/wallpapers" + older.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200 and rest.text.count('class="tile"') == 6
    assert 'id="older"' not in rest.text
    for public_id in expected[24:]:
        assert f"/g/{public_id}" in rest.text


def test_a_private_link_never_appears(live: Live) -> None:
    image = cleared_upload(live, unique_photo(7020))
    link = make_link(live, image, max_views=3)
    assert link["gallery"] is None
    assert "gallery" not in live.db.links.find_one({"link_id": link["link_id"]})
    blank = make_link(live, image, gallery_category="")
    assert blank["gallery"] is None
    assert not live.db.links.count_documents({"image_id": image[0], "gallery": {"$exists": True}})


def set_status(live: Live, image_id: str, status: str) -> None:
    live.db.images.update_one({"_id": image_id}, {"$set": {"status": status}})


def test_pending_held_blocked_and_removed_images_vanish_at_once(live: Live) -> None:
    link = public_link(live, 7030, "photography", max_views=5)
    image_id, public_id = link["image_id"], link["gallery"]["public_id"]
    assert public_id in public_ids(live, "photography")
    for status in ("pending", "review", "blocked"):
        set_status(live, image_id, status)
        assert public_id not in public_ids(live, "photography"), status
        assert public_id not in public_ids(live), status
        assert f"/g/{public_id}" not in live.links.get("/gallery", headers=HTML).text
        set_status(live, image_id, "cleared")
        assert public_id in public_ids(live, "photography"), status
    set_status(live, image_id, "removed")  # last: the sweeper then ends its links for good
    assert public_id not in public_ids(live, "photography")
    reveal = live.links.post(f"/g/{public_id}/reveal")
    assert reveal.status_code == 451 and reveal.json()["code"] == "removed"


def test_a_blocked_upload_can_never_be_made_public(live: Live) -> None:
    image = cleared_upload(live, unique_photo(7035))
    set_status(live, image[0], "blocked")
    resp = live.links.post(
        "/api/v1/links",
        json={"image_id": image[0], "owner_token": image[1], "gallery_category": "memes"},
    )
    assert resp.status_code == 403 and resp.json()["code"] == "image_not_available"
    assert live.db.gallery_claims.find_one({"_id": image[0]}) is None


def test_expired_revoked_and_used_up_entries_disappear(live: Live) -> None:
    expiring = public_link(live, 7040, "memes", expires_in=2)
    revoked = public_link(live, 7041, "memes", max_views=3)
    one_view = public_link(live, 7042, "memes", max_views=1)
    ids = {
        k: v["gallery"]["public_id"]
        for k, v in (("expiring", expiring), ("revoked", revoked), ("one_view", one_view))
    }
    now_listed = public_ids(live, "memes")
    assert all(p in now_listed for p in ids.values())

    resp = live.links.delete(
        f"/api/v1/links/{revoked['link_id']}",
        headers={"Authorization": f"Bearer {revoked['owner_token']}"},
    )
    assert resp.status_code == 204
    assert live.links.post(f"/g/{ids['one_view']}/reveal").status_code == 200
    time.sleep(2.2)
    after = public_ids(live, "memes") + public_ids(live)
    assert not any(p in after for p in ids.values()), after
    page = live.links.get("/gallery/memes", headers=HTML).text
    assert not any(f"/g/{p}" in page for p in ids.values())


def test_one_gallery_entry_per_image(live: Live) -> None:
    link = public_link(live, 7050, "nature", max_views=3)
    image = (link["image_id"], link["owner_token"])
    again = live.links.post(
        "/api/v1/links",
        json={"image_id": image[0], "owner_token": image[1], "gallery_category": "memes"},
    )
    assert again.status_code == 409 and again.json()["code"] == "already_public"
    assert make_link(live, image)["gallery"] is None  # private links are still fine
    assert live.db.links.count_documents({"image_id": image[0]}) == 2


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"gallery_category": "cats"}, "unknown_category"),
        ({"gallery_category": "x" * 65}, "invalid_request"),
        ({"gallery_category": 5}, "invalid_request"),
        ({"gallery_category": "nature", "password": "pw"}, "password_not_public"),
    ],
)
def test_bad_gallery_options_are_refused_with_a_code(
    live: Live, options: dict[str, Any], code: str
) -> None:
    image = cleared_upload(live, unique_photo(7060))
    resp = live.links.post(
        "/api/v1/links", json={"image_id": image[0], "owner_token": image[1], **options}
    )
    assert resp.status_code in (400, 422) and resp.json()["code"] == code, resp.text
    assert live.db.links.count_documents({"image_id": image[0]}) == 0
    assert live.db.gallery_claims.find_one({"_id": image[0]}) is None


def test_bad_listing_requests_get_codes(live: Live) -> None:
    resp = live.links.get("/api/v1/gallery", params={"category": "cats"})
    assert resp.status_code == 400 and resp.json()["code"] == "unknown_category"
    assert "nature" in resp.json()["categories"]
    page = live.links.get("/gallery/cats", headers=HTML)
    assert page.status_code == 404 and "unknown_category" in page.text
    for before in ("yesterday", "1-" + "z" * 40, "9" * 40):
        resp = live.links.get("/api/v1/gallery", params={"before": before})
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_cursor", before
        page = live.links.get("/gallery", params={"before": before}, headers=HTML)
        assert page.status_code == 400 and "invalid_cursor" in page.text


def test_the_upload_page_offers_the_categories_and_its_form_makes_a_public_link(
    live: Live,
) -> None:
    home = live.ingest.get("/").text
    assert "Show in the public gallery" in home
    for value in ("", "nature", "memes", "wallpapers", "photography"):
        assert f'name="gallery_category" value="{value}"' in home
    assert 'name="gallery_category" value="" checked' in home  # private unless chosen
    limits = live.ingest.get("/api/v1/limits").json()
    assert limits["link_options"]["gallery_categories"] == [
        "nature",
        "memes",
        "wallpapers",
        "photography",
    ]
    # The no-script path: upload form → "uploaded" page → its link form, posted as a browser.
    uploaded = live.ingest.post(
        "/upload", files={"file": ("p.jpg", unique_photo(7070))}, headers=HTML
    )
    assert uploaded.status_code == 202 and 'name="gallery_category"' in uploaded.text
    found_id = re.search(r'name="image_id" value="([^"]+)"', uploaded.text)
    found_owner = re.search(r'name="owner_token" value="([^"]+)"', uploaded.text)
    assert found_id is not None and found_owner is not None
    image_id, owner = found_id.group(1), found_owner.group(1)
    assert live.wait_status(image_id) == "cleared"
    form = {
        "image_id": image_id,
        "owner_token": owner,
        "max_views": "3",
        "expires_in": "3600",
        "gallery_category": "memes",
        "password": "",
    }
    created = live.links.post("/links/new", data=form, headers=HTML)
    assert created.status_code == 201 and "Public: Memes" in created.text
    public_id = live.db.links.find_one({"image_id": image_id})["gallery"]["public_id"]
    assert public_id in public_ids(live, "memes")
    refused = live.links.post("/links/new", data={**form, "gallery_category": "cats"}, headers=HTML)
    assert refused.status_code == 400 and "unknown_category" in refused.text
