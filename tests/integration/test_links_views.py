"""Views are counted exactly: concurrent reveals, per-viewer limits, off-by-one edges, bots and
prefetches that never count, and single-use tickets. Real links service, real database."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.integration.links_helpers import cleared_image, client_from, make_link, views
from tests.live import Live

JPEG_MAGIC = b"\xff\xd8\xff"
EXPANDERS = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0 A",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) "
    "Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",  # iMessage
]
PREFETCHES = [
    {"Sec-Purpose": "prefetch"},
    {"Sec-Purpose": "prefetch;prerender"},
    {"Purpose": "prefetch"},
    {"X-Moz": "prefetch"},
]


@pytest.fixture(scope="module")
def image(live: Live) -> tuple[str, str]:
    return cleared_image(live)


def test_fifty_concurrent_reveals_of_a_five_view_link_grant_exactly_five(
    live: Live, image: tuple[str, str]
) -> None:
    link = make_link(live, image, max_views=5)
    barrier = threading.Barrier(50)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def reveal() -> None:
        with httpx.Client(base_url=str(live.links.base_url), timeout=60) as client:
            barrier.wait()
            resp = client.post(f"/s/{link['token']}/reveal")
        with lock:
            results.append(resp)

    threads = [threading.Thread(target=reveal) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    codes = sorted(r.status_code for r in results)
    assert len(results) == 50
    assert codes.count(200) == 5, codes
    assert codes.count(410) == 45, codes
    assert {r.json()["code"] for r in results if r.status_code == 410} == {"used_up"}
    assert views(live, link) == 5
    stored = live.db.links.find_one({"link_id": link["link_id"]})
    assert stored["remaining"] == 0
    # Every granted ticket fetches the bytes exactly once.
    for r in (r for r in results if r.status_code == 200):
        image_url = r.json()["image_url"]
        first = live.links.get(image_url)
        assert first.status_code == 200 and first.content.startswith(JPEG_MAGIC)
        assert live.links.get(image_url).status_code == 410


@pytest.mark.parametrize("n", [1, 2, 3])
def test_off_by_one_at_n_minus_one_n_and_n_plus_one(
    live: Live, image: tuple[str, str], n: int
) -> None:
    link = make_link(live, image, max_views=n)
    token = link["token"]
    for i in range(n - 1):
        assert live.view(token).status_code == 200, f"view {i + 1} of {n}"
    page = live.links.get(f"/s/{token}", headers={"accept": "text/html"})  # N-1 spent
    assert page.status_code == 200 and "1 view left" in page.text
    last = live.view(token)  # the N-th
    assert last.status_code == 200 and last.content.startswith(JPEG_MAGIC)
    over = live.links.post(f"/s/{token}/reveal")  # N+1
    assert over.status_code == 410 and over.json()["code"] == "used_up"
    assert views(live, link) == n


def test_views_per_viewer_with_two_viewers(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image, max_views=5, max_views_per_viewer=2)
    token = link["token"]
    with client_from(live, "127.0.0.2") as alice, client_from(live, "127.0.0.3") as bob:
        for _ in range(2):
            assert alice.post(f"/s/{token}/reveal").status_code == 200
        third = alice.post(f"/s/{token}/reveal")
        assert third.status_code == 410 and third.json()["code"] == "viewer_used_up"
        assert views(live, link) == 2  # alice's refusal spent nothing of the link
        for _ in range(2):
            assert bob.post(f"/s/{token}/reveal").status_code == 200
        assert bob.post(f"/s/{token}/reveal").json()["code"] == "viewer_used_up"
    assert views(live, link) == 4
    # One view is left for someone else; the counters hold no address, only keyed hashes.
    assert live.view(token).status_code == 200
    assert live.links.post(f"/s/{token}/reveal").json()["code"] == "used_up"
    counters = list(live.db.link_viewers.find({"link_id": link["link_id"]}))
    assert sorted(c["count"] for c in counters) == [1, 2, 2]
    assert "127.0.0" not in str(counters)


def test_per_viewer_counters_are_not_linkable_across_links(
    live: Live, image: tuple[str, str]
) -> None:
    first = make_link(live, image, max_views=3, max_views_per_viewer=1)
    second = make_link(live, image, max_views=3, max_views_per_viewer=1)
    with client_from(live, "127.0.0.4") as viewer:
        assert viewer.post(f"/s/{first['token']}/reveal").status_code == 200
        assert viewer.post(f"/s/{second['token']}/reveal").status_code == 200
    ids = {
        str(c["_id"])
        for c in live.db.link_viewers.find(
            {"link_id": {"$in": [first["link_id"], second["link_id"]]}}
        )
    }
    assert len(ids) == 2  # the same person has unrelated ids on the two links


@pytest.mark.parametrize("agent", EXPANDERS)
def test_link_expanders_never_count_and_never_get_bytes(
    live: Live, image: tuple[str, str], agent: str
) -> None:
    link = make_link(live, image, max_views=1)
    token = link["token"]
    headers = {"user-agent": agent, "accept": "text/html"}
    page = live.links.get(f"/s/{token}", headers=headers)
    assert page.status_code == 200
    assert (
        "<img" not in page.text and "og:image" not in page.text and "twitter:image" not in page.text
    )
    assert "view left" not in page.text  # the card says nothing about the link's state
    assert JPEG_MAGIC not in page.content
    assert live.links.head(f"/s/{token}", headers=headers).content == b""
    refused = live.links.post(f"/s/{token}/reveal", headers={"user-agent": agent})
    assert refused.status_code == 403 and refused.json()["code"] == "automated_request"
    assert views(live, link) == 0
    assert live.view(token).status_code == 200  # the one real view is still there


@pytest.mark.parametrize("prefetch", PREFETCHES)
def test_prefetch_and_head_never_count(
    live: Live, image: tuple[str, str], prefetch: dict[str, str]
) -> None:
    link = make_link(live, image, max_views=1)
    token = link["token"]
    assert live.links.get(f"/s/{token}", headers=prefetch).status_code == 200
    assert live.links.head(f"/s/{token}").status_code == 200
    assert live.links.post(f"/s/{token}/reveal", headers=prefetch).status_code == 403
    assert views(live, link) == 0
    ticket = live.links.post(f"/s/{token}/reveal").json()
    assert views(live, link) == 1
    # A prefetch or HEAD of the image URL neither gets bytes nor uses up the ticket.
    pre = live.links.get(ticket["image_url"], headers=prefetch)
    assert pre.status_code == 403 and JPEG_MAGIC not in pre.content
    head = live.links.head(ticket["image_url"])
    assert head.status_code == 200 and head.content == b""
    served = live.links.get(ticket["image_url"])
    assert served.status_code == 200 and served.content.startswith(JPEG_MAGIC)


def test_uploader_confirmation_page_counts_nothing(live: Live, image: tuple[str, str]) -> None:
    image_id, owner_token = image
    created = live.links.post(
        "/links/new",
        data={"image_id": image_id, "owner_token": owner_token, "max_views": "1"},
        headers={"accept": "text/html"},
    )
    assert created.status_code == 201 and "/s/" in created.text
    assert "<img" not in created.text
    link = live.db.links.find_one({"image_id": image_id}, sort=[("created_at", -1)])
    assert link["views"] == 0 and link["remaining"] == 1


def test_image_response_headers(live: Live, image: tuple[str, str]) -> None:
    link = make_link(live, image, max_views=1)
    served = live.view(link["token"])
    assert served.status_code == 200
    h = served.headers
    assert h["content-type"] == "image/jpeg"  # the type we encoded
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-security-policy"] == "default-src 'none'; sandbox"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "private, no-store"
    assert h["cross-origin-resource-policy"] == "same-origin"


def test_tickets_are_single_use_and_unknown_ones_are_404(
    live: Live, image: tuple[str, str]
) -> None:
    link = make_link(live, image, max_views=2)
    ticket: dict[str, Any] = live.links.post(f"/s/{link['token']}/reveal").json()
    assert ticket["views_left"] == 1
    assert live.links.get(ticket["image_url"]).status_code == 200
    again = live.links.get(ticket["image_url"])
    assert again.status_code == 410 and again.json()["code"] == "view_ended"
    unknown = live.links.get("/v/not-a-ticket/image")
    assert unknown.status_code == 404 and unknown.json()["code"] == "ticket_not_found"
    stored = list(live.db.tickets.find({"link_id": link["link_id"]}))
    assert len(stored) == 1 and ticket["ticket"] not in str(stored)  # kept hashed only


def test_unknown_link_answers_404_without_counting(live: Live) -> None:
    resp = live.links.post("/s/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/reveal")
    assert resp.status_code == 404 and resp.json()["code"] == "link_not_found"
    page = live.links.get("/s/" + "x" * 500, headers={"accept": "text/html"})
    assert page.status_code == 404


def test_bad_inputs_get_a_4xx_with_a_code(live: Live, image: tuple[str, str]) -> None:
    image_id, owner_token = image
    link = make_link(live, image, max_views=1)
    reveal = f"/s/{link['token']}/reveal"
    json_header = {"content-type": "application/json"}
    bad = live.links.post(reveal, content=b"{not json", headers=json_header)
    assert bad.status_code == 400 and bad.json()["code"] == "malformed_request"
    huge = live.links.post(
        reveal, content=b'{"password": "' + b"x" * 10_000 + b'"}', headers=json_header
    )
    assert huge.status_code == 413 and huge.json()["code"] == "too_large"
    assert views(live, link) == 0  # refusals spend nothing
    owner = {"image_id": image_id, "owner_token": owner_token}
    for body, code in (
        ({**owner, "max_views": "three"}, "invalid_request"),
        ({**owner, "max_views": 2, "max_views_per_viewer": 3}, "max_views_per_viewer_too_high"),
        ({**owner, "expires_at": "2001-01-01T00:00:00Z"}, "expires_at_in_past"),
        ({**owner, "end_of_session": "maybe"}, "invalid_request"),
    ):
        resp = live.links.post("/api/v1/links", json=body)
        assert 400 <= resp.status_code < 500 and resp.json()["code"] == code, body
        assert resp.json()["message"]
    form = live.links.post(
        "/links/new",
        data={**owner, "max_views": "lots"},
        headers={"accept": "text/html"},
    )
    assert form.status_code == 400 and "invalid_option" in form.text
    beat = live.links.post(f"/api/v1/links/{link['link_id']}/heartbeat", json={"session_key": 5})
    assert beat.status_code == 422 and beat.json()["code"] == "invalid_request"
