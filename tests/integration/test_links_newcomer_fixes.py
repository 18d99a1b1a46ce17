"""What a newcomer trying the running stack hit in links, fixed:
invalid passwords are 400s that spend nothing, reloading "Your link is ready" makes no second
link, owner actions without a key are 401, and a deleted photo's new link is 410 image_gone."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.integration.links_helpers import cleared_upload, client_from, make_link, unique_photo
from tests.live import Live

JSON = {"content-type": "application/json"}
HTML = {"accept": "text/html"}
LONE = "\ud800"  # a lone surrogate: json.dumps escapes it (valid JSON), it has no UTF-8 form


@pytest.fixture(scope="module")
def image(live: Live) -> tuple[str, str]:
    return cleared_upload(live, unique_photo(61101))


def guesses_counted(live: Live, link_id: str) -> int:
    docs = live.db.rate_limits.find({"_id": {"$regex": f"^password:{link_id}:"}})
    return sum(int(d.get("count", 0)) for d in docs)


def link_doc(live: Live, link_id: str) -> dict[str, Any]:
    return dict(live.db.links.find_one({"link_id": link_id}))


def test_an_invalid_password_on_reveal_is_a_400_that_spends_nothing(
    live: Live, image: tuple[str, str]
) -> None:
    link = make_link(live, image, max_views=3, password="hunter2")
    reveal = f"/s/{link['token']}/reveal"
    with client_from(live, "127.0.0.31") as client:  # one keep-alive connection throughout
        for body in (json.dumps({"password": LONE}), '{"password": {"a": 1}}', '{"password": 123}'):
            resp = client.post(reveal, content=body, headers=JSON)
            assert resp.status_code == 400, (body, resp.text)
            assert resp.json()["code"] == "invalid_password" and resp.json()["message"], body
        # The connection was not reset: the next request on it is answered, and works.
        granted = client.post(reveal, json={"password": "hunter2"})
        assert granted.status_code == 200, granted.text
    doc = link_doc(live, link["link_id"])
    assert (doc["views"], doc["remaining"]) == (1, 2)  # only the right password spent a view
    assert guesses_counted(live, link["link_id"]) == 0  # and nothing counted as a guess


def test_the_share_page_form_says_so_and_takes_no_longer_password(
    live: Live, image: tuple[str, str]
) -> None:
    link = make_link(live, image, max_views=2, password="hunter2")
    page = live.links.get(f"/s/{link['token']}", headers=HTML)
    assert page.status_code == 200 and 'maxlength="128"' in page.text
    assert 'maxlength="1024"' not in page.text
    # A browser form whose password arrives as a file part: the share page again, with a 400.
    resp = live.links.post(
        f"/s/{link['token']}/reveal",
        files={"password": ("pw.txt", b"hunter2")},
        headers=HTML,
    )
    assert resp.status_code == 400 and "text/html" in resp.headers["content-type"]
    assert "The password must be text." in resp.text and 'maxlength="128"' in resp.text
    assert link_doc(live, link["link_id"])["views"] == 0


def test_link_creation_refuses_bad_passwords_clearly(live: Live, image: tuple[str, str]) -> None:
    image_id, owner_token = image
    before = live.db.links.count_documents({"image_id": image_id})
    resp = live.links.post(
        "/api/v1/links",
        content=json.dumps({"image_id": image_id, "owner_token": owner_token, "password": LONE}),
        headers=JSON,
    )
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_password", resp.text
    for length in (129, 10_000):
        resp = live.links.post(
            "/api/v1/links",
            json={"image_id": image_id, "owner_token": owner_token, "password": "a" * length},
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "password_too_long" and resp.json()["limit"] == 128
    form = live.links.post(
        "/links/new",
        data={"image_id": image_id, "owner_token": owner_token, "password": "a" * 2000},
        headers=HTML,
    )
    assert form.status_code == 400 and "password_too_long" in form.text
    # A secret with no UTF-8 form is refused field by field, never a 500.
    resp = live.links.post(
        "/api/v1/links",
        content=json.dumps({"image_id": image_id, "owner_token": LONE}),
        headers=JSON,
    )
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_request", resp.text
    assert live.db.links.count_documents({"image_id": image_id}) == before


def test_reloading_the_created_page_makes_no_second_link(live: Live) -> None:
    # The upload page's form carries the one-time key (the plain, no-JavaScript path).
    uploaded = live.ingest.post(
        "/upload", files={"file": ("p.jpg", unique_photo(61102))}, headers=HTML
    )
    assert uploaded.status_code == 202, uploaded.text
    field = dict(
        re.findall(r'name="(image_id|owner_token|idempotency_key)" value="([^"]+)"', uploaded.text)
    )
    assert set(field) == {"image_id", "owner_token", "idempotency_key"}, field
    image_id = field["image_id"]
    assert live.wait_status(image_id) == "cleared"
    form = {**field, "max_views": "3"}
    first = live.links.post("/links/new", data=form, headers=HTML)
    assert first.status_code == 201 and "/s/" in first.text
    made = live.db.links.find_one({"image_id": image_id})
    reload = live.links.post("/links/new", data=form, headers=HTML)  # the browser's reload
    assert reload.status_code == 409 and "already_created" in reload.text
    assert "This link was already made" in reload.text and "/s/" not in reload.text
    assert live.db.links.count_documents({"image_id": image_id}) == 1
    # The first link's "Turn off this link" is still there, and works.
    turn_off = re.search(
        r'action="/owner/revoke">\s*<input type="hidden" name="link_id" value="([0-9a-f]+)"',
        reload.text,
    )
    assert turn_off is not None and turn_off.group(1) == made["link_id"]
    done = live.links.post(
        "/owner/revoke",
        data={"link_id": turn_off.group(1), "owner_token": field["owner_token"]},
        headers=HTML,
    )
    assert done.status_code == 200 and link_doc(live, made["link_id"])["revoked"] is True
    # "Make another link" carries a fresh key: several links on purpose still work.
    fresh = re.search(r'name="idempotency_key" value="([^"]+)"', reload.text)
    assert fresh is not None and fresh.group(1) != field["idempotency_key"]
    again = live.links.post(
        "/links/new", data={**form, "idempotency_key": fresh.group(1)}, headers=HTML
    )
    assert again.status_code == 201
    assert live.db.links.count_documents({"image_id": image_id}) == 2


def test_the_api_takes_an_idempotency_key(live: Live, image: tuple[str, str]) -> None:
    image_id, owner_token = image
    body = {"image_id": image_id, "owner_token": owner_token, "max_views": 2}
    key = {"idempotency-key": "api-key-0001"}
    first = live.links.post("/api/v1/links", json=body, headers=key)
    assert first.status_code == 201, first.text
    repeat = live.links.post("/api/v1/links", json=body, headers=key)
    assert repeat.status_code == 409, repeat.text
    answer = repeat.json()
    assert answer["code"] == "already_created" and answer["link_id"] == first.json()["link_id"]
    assert "token" not in answer and answer["message"]
    assert live.db.links.count_documents({"link_id": first.json()["link_id"]}) == 1
    # The key is the owner's, per image: another photo may use the same one.
    other = cleared_upload(live, unique_photo(61103))
    resp = live.links.post(
        "/api/v1/links", json={"image_id": other[0], "owner_token": other[1]}, headers=key
    )
    assert resp.status_code == 201, resp.text
    bad = live.links.post("/api/v1/links", json=body, headers={"idempotency-key": "no spaces!"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_idempotency_key"


def test_owner_actions_without_a_key_are_401(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image)
    for path in (f"/api/v1/links/{link['link_id']}", f"/api/v1/owner/images/{image[0]}"):
        for headers in ({}, {"authorization": "Basic abc"}):
            resp = live.links.delete(path, headers=headers)
            assert resp.status_code == 401 and resp.json()["code"] == "owner_key_missing"
            assert resp.headers["www-authenticate"].startswith("Bearer")
        wrong = live.links.delete(path, headers={"authorization": "Bearer not-the-owner"})
        assert wrong.status_code == 404  # a wrong key learns nothing
    assert link_doc(live, link["link_id"]).get("revoked") is not True


def test_why_a_photo_cannot_get_a_new_link(live: Live) -> None:
    image_id, owner_token = cleared_upload(live, unique_photo(61104))
    body = {"image_id": image_id, "owner_token": owner_token}

    def attempt() -> tuple[int, str]:
        resp = live.links.post("/api/v1/links", json=body)
        return resp.status_code, str(resp.json()["code"])

    def set_status(status: str) -> None:
        live.db.images.update_one({"_id": image_id}, {"$set": {"status": status}})

    set_status("pending")
    assert attempt() == (409, "not_scanned_yet")
    set_status("removed")
    assert attempt() == (451, "removed")
    set_status("cleared")
    auth = {"authorization": f"Bearer {owner_token}"}
    assert live.links.delete(f"/api/v1/owner/images/{image_id}", headers=auth).status_code == 204
    assert attempt() == (410, "image_gone")
    set_status("expired")
    assert attempt() == (410, "image_gone")
    assert live.db.links.count_documents({"image_id": image_id}) == 0
