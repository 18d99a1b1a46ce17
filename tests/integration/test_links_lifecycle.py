"""Promises about time: expiry, end of session, passwords, revocation, deletion everywhere,
takedown, and bytes that are really gone afterwards. Real services (the test stack runs the
sweeper every second and gives end-of-session links a 3 s grace period)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from bson import ObjectId
from websockets.sync.client import connect

from services.shared.linkrepo import LinkRepo
from tests.integration.links_helpers import (
    cleared_image,
    cleared_upload,
    make_link,
    unique_photo,
    views,
)
from tests.live import Live

GRACE_S = 3
JPEG_MAGIC = b"\xff\xd8\xff"


def eventually(check: Callable[[], bool], timeout: float = 20, step: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s: {check.__doc__ or check}")


def blob_exists(live: Live, blob_id: str) -> bool:
    oid = ObjectId(blob_id)
    files = live.db["blobs.files"].count_documents({"_id": oid})
    chunks = live.db["blobs.chunks"].count_documents({"files_id": oid})
    return bool(files or chunks)


@pytest.fixture(scope="module")
def image(live: Live) -> tuple[str, str]:
    img = cleared_image(live)
    # An anchor link that outlives the module: the tests here end their own links (sessions
    # lapse, links are revoked), and once an image's last link ends the sweeper deletes it.
    make_link(live, img, max_views=1000)
    return img


def test_time_expiry_spends_nothing_and_deletes_the_bytes(live: Live) -> None:
    image = cleared_image(live)
    doc = live.db.images.find_one({"_id": image[0]})
    blob_id, thumb_id = str(doc["blob_id"]), str(doc["thumb_blob_id"])
    assert blob_exists(live, blob_id) and blob_exists(live, thumb_id)
    link = make_link(live, image, max_views=3, expires_in=1)
    time.sleep(1.2)
    resp = live.links.post(f"/s/{link['token']}/reveal")
    assert resp.status_code == 410 and resp.json()["code"] == "expired"
    assert views(live, link) == 0

    def purged() -> bool:
        done = live.db.images.find_one({"_id": image[0]}).get("purged_at") is not None
        return done and not blob_exists(live, blob_id) and not blob_exists(live, thumb_id)

    eventually(purged)
    after = live.db.images.find_one({"_id": image[0]})
    assert after["status"] == "expired" and after["blob_id"] is None
    assert live.links.post(f"/s/{link['token']}/reveal").status_code in (410, 451)


def test_used_up_link_bytes_are_deleted_after_the_ticket_is_used(live: Live) -> None:
    image = cleared_image(live)
    blob_id = str(live.db.images.find_one({"_id": image[0]})["blob_id"])
    link = make_link(live, image, max_views=1, expires_in=3600)
    ticket = live.links.post(f"/s/{link['token']}/reveal").json()
    time.sleep(1.5)  # a sweep passes: an unused ticket keeps the bytes
    assert blob_exists(live, blob_id)
    assert live.links.get(ticket["image_url"]).content.startswith(JPEG_MAGIC)
    eventually(lambda: not blob_exists(live, blob_id))


def test_end_of_session_link_lives_while_the_page_beats_then_dies(
    live: Live, image: tuple[str, str]
) -> None:
    link = make_link(live, image, max_views=10, end_of_session=True)
    session: dict[str, Any] = link["session"]
    assert session["grace_s"] == GRACE_S and session["key"]
    ws_url = session["websocket_url"]
    with connect(ws_url) as ws:
        ws.send(json.dumps({"session_key": session["key"]}))
        for _ in range(GRACE_S + 2):  # longer than the grace period, kept alive by beats
            state = json.loads(ws.recv(timeout=5))
            assert "alive_until" in state
            time.sleep(1)
            ws.send("beat")
        assert live.view(link["token"]).status_code == 200
    closed_at = time.monotonic()

    def ended() -> bool:  # asked through the share page, which counts nothing
        resp = live.links.get(f"/s/{link['token']}", headers={"accept": "text/html"})
        return resp.status_code == 410 and "session_ended" in resp.text

    eventually(ended, timeout=GRACE_S + 5)
    assert time.monotonic() - closed_at >= GRACE_S - 1.5  # not before the grace period
    assert views(live, link) == 1
    page = live.links.get(f"/s/{link['token']}", headers={"accept": "text/html"})
    assert page.status_code == 410 and "closed their page" in page.text
    # A lapsed session cannot be revived by a late heartbeat.
    late = live.links.post(
        f"/api/v1/links/{link['link_id']}/heartbeat", json={"session_key": session["key"]}
    )
    assert late.status_code == 410 and late.json()["code"] == "session_ended"
    logs = live.full_logs()  # uvicorn's WebSocket handshake line (address + raw path) is dropped
    assert link["link_id"] not in logs and '"WebSocket ' not in logs


def test_session_heartbeat_needs_the_session_key(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image, max_views=1, end_of_session=True)
    wrong = live.links.post(
        f"/api/v1/links/{link['link_id']}/heartbeat", json={"session_key": "guess"}
    )
    assert wrong.status_code == 404 and wrong.json()["code"] == "session_not_found"
    with connect(link["session"]["websocket_url"]) as ws:
        ws.send(json.dumps({"session_key": "guess"}))
        assert json.loads(ws.recv(timeout=5))["code"] == "session_not_found"
    ok = live.links.post(
        f"/api/v1/links/{link['link_id']}/heartbeat", json={"session_key": link["session"]["key"]}
    )
    assert ok.status_code == 200 and ok.json()["alive_until"]


def test_password_wrong_never_costs_a_view(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image, max_views=1, password="correct horse")
    token = link["token"]
    stored = live.db.links.find_one({"link_id": link["link_id"]})
    assert stored["password_hash"].startswith("$argon2id$")
    assert "correct horse" not in str(stored)
    missing = live.links.post(f"/s/{token}/reveal")
    assert missing.status_code == 403 and missing.json()["code"] == "password_required"
    for _ in range(3):
        wrong = live.links.post(f"/s/{token}/reveal", json={"password": "battery staple"})
        assert wrong.status_code == 403 and wrong.json()["code"] == "wrong_password"
    assert views(live, link) == 0
    right = live.view(token, data={"password": "correct horse"})  # a form post works too
    assert right.status_code == 200 and right.content.startswith(JPEG_MAGIC)
    assert views(live, link) == 1


def test_password_guesses_are_rate_limited(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image, max_views=1, password="s3cret")
    codes = [
        live.links.post(f"/s/{link['token']}/reveal", json={"password": f"no{i}"}).status_code
        for i in range(12)
    ]
    assert codes[:10] == [403] * 10 and codes[10:] == [429, 429]
    assert views(live, link) == 0


def test_owner_lists_and_revokes_links(live: Live, image: tuple[str, str]) -> None:
    image_id, owner_token = image
    keep = make_link(live, image, max_views=2)
    drop = make_link(live, image, max_views=2)
    auth = {"authorization": f"Bearer {owner_token}"}
    assert live.links.delete(f"/api/v1/links/{drop['link_id']}", headers=auth).status_code == 204
    gone = live.links.post(f"/s/{drop['token']}/reveal")
    assert gone.status_code == 410 and gone.json()["code"] == "revoked"
    assert live.view(keep["token"]).status_code == 200
    listed = live.links.post(
        "/api/v1/owner/links", json={"image_id": image_id, "owner_token": owner_token}
    ).json()["links"]
    states = {row["link_id"]: row for row in listed}
    assert states[drop["link_id"]]["state"] == "revoked"
    assert states[keep["link_id"]]["state"] == "live" and states[keep["link_id"]]["views"] == 1
    assert all("token" not in row for row in listed)
    # A wrong owner key can neither list nor revoke, and learns nothing from the answer.
    bad = {"authorization": "Bearer not-the-owner"}
    assert live.links.delete(f"/api/v1/links/{keep['link_id']}", headers=bad).status_code == 404
    # No key at all is a 401 (with a Bearer challenge); a wrong one stays 404: no oracle.
    assert live.links.delete(f"/api/v1/links/{keep['link_id']}").status_code == 401
    wrong = live.links.post(
        "/api/v1/owner/links", json={"image_id": image_id, "owner_token": "not-the-owner"}
    )
    assert wrong.status_code == 404
    assert live.links.get("/api/v1/owner/links").status_code == 405  # POST only


@pytest.mark.parametrize(
    "delete_path",
    [
        pytest.param("/api/v1/owner/images/{}", id="owner-path"),
        # The old path, kept for existing clients (one public host gives it to ingest).
        pytest.param("/api/v1/images/{}", id="legacy-path"),
    ],
)
def test_delete_everywhere_kills_every_link_and_the_bytes(live: Live, delete_path: str) -> None:
    image_id, owner_token = image = cleared_image(live)
    url = delete_path.format(image_id)
    missing = live.links.delete(url)
    assert missing.status_code == 401 and missing.json()["code"] == "owner_key_missing"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    bad = {"authorization": "Bearer not-the-owner"}
    assert live.links.delete(url, headers=bad).status_code == 404
    doc = live.db.images.find_one({"_id": image_id})
    blob_id, thumb_id = str(doc["blob_id"]), str(doc["thumb_blob_id"])
    links = [make_link(live, image, max_views=3) for _ in range(3)]
    ticket = live.links.post(f"/s/{links[0]['token']}/reveal").json()
    auth = {"authorization": f"Bearer {owner_token}"}
    assert live.links.delete(url, headers=auth).status_code == 204
    for link in links:
        resp = live.links.post(f"/s/{link['token']}/reveal")
        assert resp.status_code == 410 and resp.json()["code"] == "deleted"
    assert live.links.get(ticket["image_url"]).status_code in (404, 410, 451)

    def purged() -> bool:
        done = live.db.images.find_one({"_id": image_id}).get("purged_at") is not None
        return done and not blob_exists(live, blob_id) and not blob_exists(live, thumb_id)

    eventually(purged)
    after = live.db.images.find_one({"_id": image_id})
    assert after["status"] == "deleted" and after["purged_at"] is not None
    # Idempotent, and a new link is refused.
    assert live.links.delete(url, headers=auth).status_code == 204
    again = live.links.post(
        "/api/v1/links", json={"image_id": image_id, "owner_token": owner_token}
    )
    assert again.status_code == 410 and again.json()["code"] == "image_gone"


def test_takedown_answers_451_and_ends_every_link(live: Live) -> None:
    image_id, _ = image = cleared_upload(live, unique_photo(seed=451))
    links = [make_link(live, image, max_views=2) for _ in range(2)]
    phash = live.db.images.find_one({"_id": image_id})["verdict"]["hashes"]["phash"]
    ban = live.review.post(
        "/api/v1/banks/lifecycle/entries", json={"hash": phash, "reason": "confirmed abuse"}
    )
    assert ban.status_code == 201 and image_id in ban.json()["taken_down"]
    for link in links:
        resp = live.links.post(f"/s/{link['token']}/reveal")
        assert resp.status_code == 451 and resp.json()["code"] == "removed"
        assert "hash" not in resp.text and "bank" not in resp.text  # a neutral reason

    def all_ended() -> bool:
        docs = list(live.db.links.find({"image_id": image_id}))
        return all(d.get("ended_reason") == "removed" for d in docs)

    eventually(all_ended, timeout=15)  # the links service consumed image.takedown
    assert all(views(live, link) == 0 for link in links)


def test_a_lost_takedown_event_still_ends_the_links(live: Live) -> None:
    """The broker may forget an image.takedown (it keeps nothing across a restart): the
    sweeper's reconcile ends the links of removed images all the same."""
    image_id, _ = image = cleared_upload(live, unique_photo(seed=452))
    link = make_link(live, image, max_views=2)
    live.db.images.update_one(  # removed with no event published at all
        {"_id": image_id}, {"$set": {"status": "removed", "removal": {"reason": "test"}}}
    )
    assert live.links.post(f"/s/{link['token']}/reveal").status_code == 451  # at once

    def ended() -> bool:
        doc = live.db.links.find_one({"link_id": link["link_id"]})
        return bool(doc.get("revoked")) and doc.get("ended_reason") == "removed"

    eventually(ended, timeout=10)
    assert live.db.images.find_one({"_id": image_id})["links_ended_at"] is not None


def test_the_right_password_never_counts_as_a_guess(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image, max_views=14, password="open sesame")
    for _ in range(12):  # more than CHATPIC_PASSWORD_ATTEMPTS, all right
        assert (
            live.links.post(
                f"/s/{link['token']}/reveal", json={"password": "open sesame"}
            ).status_code
            == 200
        )
    assert views(live, link) == 12


def test_revoke_drops_a_ticket_already_granted(live: Live, image: tuple[str, str]) -> None:
    _, owner_token = image
    link = make_link(live, image, max_views=2)
    ticket = live.links.post(f"/s/{link['token']}/reveal").json()
    auth = {"authorization": f"Bearer {owner_token}"}
    assert live.links.delete(f"/api/v1/links/{link['link_id']}", headers=auth).status_code == 204
    assert live.links.get(ticket["image_url"]).status_code == 404  # nothing left to fetch


def test_owner_revocation_survives_an_overturned_takedown(live: Live) -> None:
    image_id, owner_token = image = cleared_upload(live, unique_photo(seed=453))
    revoked, kept = make_link(live, image, max_views=3), make_link(live, image, max_views=3)
    live.db.images.update_one({"_id": image_id}, {"$set": {"status": "removed"}})
    live.db.links.update_many(  # what the takedown consumer does
        {"image_id": image_id}, {"$set": {"revoked": True, "ended_reason": "removed"}}
    )
    auth = {"authorization": f"Bearer {owner_token}"}
    assert live.links.delete(f"/api/v1/links/{revoked['link_id']}", headers=auth).status_code == 204
    LinkRepo(live.db).restore_removed(image_id)  # the appeal is overturned
    live.db.images.update_one({"_id": image_id}, {"$set": {"status": "cleared"}})
    again = live.links.post(f"/s/{revoked['token']}/reveal")
    assert again.status_code == 410 and again.json()["code"] == "revoked"
    assert live.view(kept["token"]).status_code == 200
