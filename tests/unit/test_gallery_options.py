"""Gallery link options without a database: the category setting, the category a link may be
listed under, the password rule, one gallery entry per image, and that a gallery public id
costs the same reads as a share token (known or not)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from services.links import creation, domain
from services.links.creation import LinkOptions
from services.links.options import LinkRequest, gallery_category, resolve
from services.links.settings import LinksSettings
from services.shared.errors import DomainError, NotFound
from services.shared.linkoptions import gallery_categories
from services.shared.linkrepo import LinkRepo
from services.shared.repos import ImageRepo
from services.shared.tokens import token_hash

SALT = b"unit-test-salt"
CATS = ("nature", "memes", "wallpapers", "photography")
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_categories_setting_is_parsed_in_order_lower_case_without_repeats() -> None:
    assert gallery_categories("nature,memes,wallpapers,photography") == CATS
    assert gallery_categories(" Nature , MEMES,,nature , cats-2 ") == ("nature", "memes", "cats-2")
    assert gallery_categories("") == ()
    assert LinksSettings().gallery_categories.split(",") == list(CATS)


@pytest.mark.parametrize("bad", ["a b", "nature,../x", "x" * 40, "thumbs", "ünïcode", "-x"])
def test_a_category_that_is_not_a_short_slug_stops_the_service(bad: str) -> None:
    with pytest.raises(ValueError, match="CHATPIC_GALLERY_CATEGORIES"):
        gallery_categories(bad)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_category_means_private(value: str | None) -> None:
    assert gallery_category(value, CATS, None) is None
    assert gallery_category(value, CATS, "secret") is None  # a private link may have one


def test_a_known_category_is_chosen_case_insensitively() -> None:
    assert gallery_category("Nature ", CATS, None) == "nature"


@pytest.mark.parametrize("value", ["cats", "nature;", "NATURE2", "x" * 64])
def test_unknown_category_is_refused_with_the_menu(value: str) -> None:
    with pytest.raises(DomainError) as refused:
        gallery_category(value, CATS, None)
    assert refused.value.status == 400 and refused.value.code == "unknown_category"
    assert refused.value.to_dict()["categories"] == list(CATS)


def test_unknown_category_when_the_gallery_is_off() -> None:
    with pytest.raises(DomainError) as refused:
        gallery_category("nature", (), None)
    assert refused.value.code == "unknown_category"


def test_a_password_protected_link_cannot_be_public() -> None:
    with pytest.raises(DomainError) as refused:
        gallery_category("memes", CATS, "hunter2")
    assert refused.value.status == 400 and refused.value.code == "password_not_public"


def test_resolve_carries_the_category_and_refuses_it_with_a_password() -> None:
    settings = LinksSettings()
    req = LinkRequest(image_id="i", owner_token="o", gallery_category="memes")
    assert resolve(req, settings, NOW).gallery_category == "memes"
    private = LinkRequest(image_id="i", owner_token="o")
    assert resolve(private, settings, NOW).gallery_category is None
    both = LinkRequest(image_id="i", owner_token="o", gallery_category="memes", password="pw")
    with pytest.raises(DomainError) as refused:
        resolve(both, settings, NOW)
    assert refused.value.code == "password_not_public"
    off = LinksSettings(gallery_categories="")
    with pytest.raises(DomainError) as unknown:
        resolve(req, off, NOW)
    assert unknown.value.code == "unknown_category"


class Claims:
    """Twin of the claim half of LinkRepo: one gallery entry per image."""

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}
        self.inserted: list[dict[str, Any]] = []

    def claim_gallery(self, image_id: str, link_id: str, purge_at: datetime) -> bool:
        if image_id in self.claims:
            return False
        self.claims[image_id] = link_id
        return True

    def release_gallery(self, image_id: str, link_id: str) -> None:
        if self.claims.get(image_id) == link_id:
            del self.claims[image_id]

    def insert(self, doc: dict[str, Any]) -> bool:
        self.inserted.append(doc)
        return True  # a new link (False would mean its form was already used)

    def revoke(self, link_id: str, image_id: str, reason: str) -> bool:
        return True


class OneImage:
    def __init__(self) -> None:
        self.doc = {"_id": "img1", "status": "cleared", "owner_token_hash": token_hash(SALT, "k")}

    def get(self, image_id: str) -> dict[str, Any] | None:
        return self.doc if image_id == "img1" else None

    def get_owned(self, image_id: str, owner_token_hash: str) -> dict[str, Any] | None:
        doc = self.get(image_id)
        return doc if doc and doc["owner_token_hash"] == owner_token_hash else None

    def note_link(self, image_id: str, alive_until: datetime) -> bool:
        return True


def make(links: Claims, category: str | None, password_hash: str | None = None) -> Any:
    return creation.create_link(
        images=cast(ImageRepo, OneImage()),
        links=cast(LinkRepo, links),
        salt=SALT,
        image_id="img1",
        owner_token="k",
        options=LinkOptions(
            expires_in_s=3600,
            max_views=3,
            gallery_category=category,
            password_hash=password_hash,
        ),
        session_grace_s=60,
        record_retention_s=60,
    )


def test_a_public_link_stores_its_gallery_entry_apart_from_its_ids() -> None:
    links = Claims()
    created = make(links, "nature")
    entry = created.gallery
    assert entry is not None and entry.category == "nature"
    assert entry.public_id not in (created.link_id, created.token)
    assert len(entry.public_id) == 32 and entry.listed_at.microsecond % 1000 == 0
    stored = links.inserted[0]["gallery"]
    assert stored == {
        "category": "nature",
        "public_id": entry.public_id,
        "listed_at": entry.listed_at,
    }


def test_an_image_is_listed_at_most_once_but_private_links_stay_possible() -> None:
    links = Claims()
    make(links, "nature")
    with pytest.raises(DomainError) as refused:
        make(links, "memes")
    assert refused.value.status == 409 and refused.value.code == "already_public"
    assert len(links.inserted) == 1
    assert make(links, None).gallery is None
    assert "gallery" not in links.inserted[-1]


def test_the_domain_refuses_a_public_password_link_too() -> None:
    links = Claims()
    with pytest.raises(DomainError) as refused:
        make(links, "nature", password_hash="$argon2id$x")
    assert refused.value.code == "password_not_public"
    assert not links.claims and not links.inserted


class Reads:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []


class LinksByBoth:
    def __init__(self, reads: Reads, doc: dict[str, Any]) -> None:
        self.reads, self.doc = reads, doc

    def get(self, h: str) -> dict[str, Any] | None:
        self.reads.calls.append(("links", "get"))
        return self.doc if h == self.doc["_id"] else None

    def by_public_id(self, public_id: str) -> dict[str, Any] | None:
        self.reads.calls.append(("links", "by_public_id"))
        return self.doc if public_id == self.doc["gallery"]["public_id"] else None


class Images:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    def get(self, image_id: str) -> dict[str, Any] | None:
        self.reads.calls.append(("images", "get"))
        return {"_id": "img1", "status": "cleared"} if image_id == "img1" else None


def test_describe_by_public_id_is_the_share_flow_with_the_same_reads_when_unknown() -> None:
    reads = Reads()
    far = datetime.now(UTC) + timedelta(hours=1)
    link = {
        "_id": token_hash(SALT, "tok"),
        "link_id": "L1",
        "image_id": "img1",
        "expires_at": far,
        "alive_until": far,
        "remaining": 2,
        "max_views": 2,
        "gallery": {"category": "memes", "public_id": "p" * 32, "listed_at": NOW},
    }
    links = cast(LinkRepo, LinksByBoth(reads, link))
    images = cast(ImageRepo, Images(reads))
    by_token = domain.describe(images=images, links=links, salt=SALT, token="tok")
    by_id = domain.describe(images=images, links=links, salt=SALT, public_id="p" * 32)
    assert by_token == by_id and by_id.views_left == 2
    reads.calls.clear()
    domain.describe(images=images, links=links, salt=SALT, public_id="p" * 32)
    known = list(reads.calls)
    reads.calls.clear()
    with pytest.raises(NotFound):
        domain.describe(images=images, links=links, salt=SALT, public_id="q" * 32)
    assert reads.calls == known == [("links", "by_public_id"), ("images", "get")]
