"""Links domain rules without a database: option caps, who counts as a bot, and that an unknown
token costs the same reads as a real one (no timing oracle from skipped work)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from services.links import domain
from services.links.options import LinkRequest, form_bool, form_int, resolve
from services.links.owner import link_state
from services.links.passwords import PasswordCheck, hash_password
from services.links.settings import LinksSettings
from services.links.visitors import Viewer, is_automated, is_link_expander, is_prefetch
from services.shared.errors import DomainError, Forbidden, NotFound
from services.shared.linkrepo import LinkRepo, TicketRepo, ViewerRepo
from services.shared.repos import ImageRepo
from services.shared.tokens import token_hash

SALT = b"unit-test-salt"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Reads:
    """Records every repository call, in order, as (repo, method)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []


class FakeImages:
    def __init__(self, reads: Reads, docs: dict[str, dict[str, Any]]) -> None:
        self.reads, self.docs = reads, docs

    def get(self, image_id: str) -> dict[str, Any] | None:
        self.reads.calls.append(("images", "get"))
        return self.docs.get(image_id)

    def touch_purge_check(self, image_id: str) -> None:
        self.reads.calls.append(("images", "touch"))


class FakeLinks:
    def __init__(self, reads: Reads, docs: dict[str, dict[str, Any]]) -> None:
        self.reads, self.docs = reads, docs

    def get(self, h: str) -> dict[str, Any] | None:
        self.reads.calls.append(("links", "get"))
        return self.docs.get(h)

    def redeem(self, h: str) -> bool:
        self.reads.calls.append(("links", "redeem"))
        doc = self.docs[h]
        if doc["remaining"] <= 0:
            return False
        doc["remaining"] -= 1
        return True


class FakeTickets:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads
        self.rows: list[str] = []

    def insert(
        self, h: str, link_id: str, image_id: str, expires_at: datetime, *, last: bool = False
    ) -> None:
        self.reads.calls.append(("tickets", "insert"))
        self.rows.append(h)

    def discard(self, h: str) -> None:
        self.reads.calls.append(("tickets", "discard"))
        self.rows.remove(h)


def world(remaining: int = 1, status: str = "cleared") -> tuple[Reads, FakeImages, FakeLinks]:
    reads = Reads()
    images = FakeImages(reads, {"img1": {"_id": "img1", "status": status}})
    far = datetime.now(UTC) + timedelta(hours=1)
    links = FakeLinks(
        reads,
        {
            token_hash(SALT, "real-token"): {
                "_id": token_hash(SALT, "real-token"),
                "link_id": "L1",
                "image_id": "img1",
                "expires_at": far,
                "alive_until": far,
                "remaining": remaining,
                "max_views": 1,
            }
        },
    )
    return reads, images, links


def describe(images: FakeImages, links: FakeLinks, token: str) -> object:
    return domain.describe(
        images=cast(ImageRepo, images), links=cast(LinkRepo, links), salt=SALT, token=token
    )


def reveal(images: FakeImages, links: FakeLinks, token: str, reads: Reads) -> domain.Ticket:
    return domain.reveal(
        images=cast(ImageRepo, images),
        links=cast(LinkRepo, links),
        viewers=cast(ViewerRepo, None),
        tickets=cast(TicketRepo, FakeTickets(reads)),
        passwords=PasswordCheck(None),
        salt=SALT,
        token=token,
        viewer=Viewer(key="k"),
        ticket_ttl_s=60,
    )


def test_unknown_token_does_the_same_reads_as_a_real_one_on_the_share_page() -> None:
    reads, images, links = world()
    describe(images, links, "real-token")
    real = list(reads.calls)
    reads.calls.clear()
    with pytest.raises(NotFound):
        describe(images, links, "made-up-token")
    assert reads.calls == real == [("links", "get"), ("images", "get")]


def test_unknown_token_does_the_same_reads_as_an_ended_link_on_reveal() -> None:
    reads, images, links = world(remaining=0)
    with pytest.raises(DomainError) as ended:
        reveal(images, links, "real-token", reads)
    assert ended.value.code == "used_up"
    real = list(reads.calls)
    reads.calls.clear()
    with pytest.raises(NotFound):
        reveal(images, links, "made-up-token", reads)
    assert reads.calls == real


def test_unknown_token_does_the_same_reads_as_a_live_link_on_reveal() -> None:
    """Up to the point where the lookup decides (found or not), a live link and an unknown
    token make the same repository calls in the same order; only then does the live one go on
    to spend its view."""
    reads, images, links = world(remaining=2)
    assert reveal(images, links, "real-token", reads).ticket  # it was live: a view was spent
    assert links.docs[token_hash(SALT, "real-token")]["remaining"] == 1
    live = list(reads.calls)
    reads.calls.clear()
    with pytest.raises(NotFound):
        reveal(images, links, "made-up-token", reads)
    unknown = list(reads.calls)
    assert unknown == [("links", "get"), ("images", "get")]
    assert live[: len(unknown)] == unknown
    assert live[len(unknown) : len(unknown) + 2] == [("tickets", "insert"), ("links", "redeem")]


def test_reveal_spends_after_checks_and_issues_a_hashed_ticket() -> None:
    reads, images, links = world(remaining=1)
    ticket = reveal(images, links, "real-token", reads)
    assert ticket.views_left == 0 and len(ticket.ticket) >= 22
    assert ("links", "redeem") in reads.calls and ("images", "touch") in reads.calls
    assert reads.calls.index(("links", "redeem")) > reads.calls.index(("images", "get"))


def test_removed_image_never_spends_a_view() -> None:
    reads, images, links = world(remaining=1, status="removed")
    with pytest.raises(domain.Removed):
        reveal(images, links, "real-token", reads)
    assert ("links", "redeem") not in reads.calls


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("pending", "removed"),
        ("review", "removed"),
        ("blocked", "removed"),
        ("removed", "removed"),
        ("", "removed"),
        ("surprise", "removed"),
        ("expired", "expired"),
        ("deleted", "deleted"),
    ],
)
def test_fail_closed_for_every_status_but_cleared(status: str, code: str) -> None:
    _, images, links = world(status=status)
    with pytest.raises(DomainError) as refused:
        describe(images, links, "real-token")
    assert refused.value.code == code and refused.value.status in (410, 451)


def test_wrong_password_is_refused_before_anything_is_spent() -> None:
    reads, images, links = world(remaining=1)
    links.docs[token_hash(SALT, "real-token")]["password_hash"] = hash_password("right")
    for viewer, code in (
        (Viewer("k"), "password_required"),
        (Viewer("k", "wrong"), "wrong_password"),
    ):
        with pytest.raises(Forbidden) as refused:
            domain.reveal(
                images=cast(ImageRepo, images),
                links=cast(LinkRepo, links),
                viewers=cast(ViewerRepo, None),
                tickets=cast(TicketRepo, FakeTickets(reads)),
                passwords=PasswordCheck(None),
                salt=SALT,
                token="real-token",
                viewer=viewer,
                ticket_ttl_s=60,
            )
        assert refused.value.code == code
    assert ("links", "redeem") not in reads.calls


def settings(**values: Any) -> LinksSettings:
    return LinksSettings(**values)


def test_option_caps() -> None:
    s = settings()
    base = {"image_id": "i", "owner_token": "o"}
    ok = resolve(LinkRequest(**base, max_views=5, max_views_per_viewer=2), s, NOW)
    assert (ok.max_views, ok.max_views_per_viewer, ok.expires_in_s) == (5, 2, 3600)
    cases = [
        ({"max_views": 2, "max_views_per_viewer": 3}, "max_views_per_viewer_too_high"),
        ({"max_views": 100000}, "max_views_too_high"),
        ({"expires_in": 10}, "expires_in_too_short"),
        ({"expires_in": 10**8}, "expires_in_too_long"),
        ({"expires_at": NOW - timedelta(seconds=5)}, "expires_at_in_past"),
        ({"expires_at": NOW + timedelta(hours=1), "expires_in": 600}, "conflicting_expiry"),
        ({"password": "x" * 200}, "password_too_long"),
    ]
    for extra, code in cases:
        with pytest.raises(DomainError) as refused:
            resolve(LinkRequest(**base, **extra), s, NOW)
        assert refused.value.code == code and refused.value.status == 400, extra
    at = resolve(LinkRequest(**base, expires_at=NOW + timedelta(hours=2)), s, NOW)
    assert at.expires_in_s == 7200
    # "-" is not in argon2's base64 alphabet: the plain password can never show by chance.
    hashed = resolve(LinkRequest(**base, password="p-w"), s, NOW).password_hash
    assert hashed is not None and hashed.startswith("$argon2id$") and "p-w" not in hashed


def test_form_fields() -> None:
    assert form_int("", "x") is None and form_int(" 3 ", "x") == 3
    for bad in ("three", "0", "-1"):
        with pytest.raises(DomainError) as refused:
            form_int(bad, "max_views")
        assert refused.value.code == "invalid_option"
    assert form_bool("on") and not form_bool(None) and not form_bool("")


@pytest.mark.parametrize(
    "agent",
    [
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Slack-ImgProxy (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "TelegramBot (like TwitterBot)",
        "WhatsApp/2.23.20.0 A",
        "facebookexternalhit/1.1",
        "Twitterbot/1.0",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    ],
)
def test_link_expanders_are_recognised(agent: str) -> None:
    assert is_link_expander(agent)


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/440.0;]",  # Facebook's in-app browser
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 Telegram-iOS",
        "python-httpx/0.27",
        "",
    ],
)
def test_people_and_api_clients_are_not_expanders(agent: str) -> None:
    assert not is_link_expander(agent)
    assert not is_automated(agent, {})


def test_prefetch_headers() -> None:
    assert is_prefetch({"sec-purpose": "prefetch"})
    assert is_prefetch({"sec-purpose": "prefetch;prerender"})
    assert is_prefetch({"purpose": "prefetch"})
    assert is_prefetch({"x-moz": "prefetch"})
    assert not is_prefetch({"accept": "text/html"})


@pytest.mark.parametrize(
    ("status", "code"), [("expired", "used_up"), ("deleted", "used_up"), ("removed", "removed")]
)
def test_a_used_up_link_says_so_after_its_bytes_were_swept(status: str, code: str) -> None:
    """The sweeper expires the image right after the last view: the link still says why it
    ended (used up), while moderation's 451 wins over everything."""
    _, images, links = world(remaining=0, status=status)
    with pytest.raises(DomainError) as refused:
        describe(images, links, "real-token")
    assert refused.value.code == code


def test_owner_sees_a_held_photo_as_held_not_live() -> None:
    _, _, links = world(remaining=2)
    link = next(iter(links.docs.values()))
    at = datetime.now(UTC)
    assert link_state(link, at) == "live"
    assert link_state(link, at, "review") == "held"  # hidden after reports, awaiting review
    assert link_state(link, at, "removed") == "removed"
    link["remaining"] = 0
    assert link_state(link, at, "review") == "used_up"
