"""The gallery listing without a database: cursors, the query, who is visible (fail closed),
ages, and paging over batches with one status read per batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from services.links import gallery
from services.links.gallery import Cursor, listing_query, parse_cursor, visible
from services.shared.errors import DomainError
from services.shared.linkrepo import LinkRepo
from services.shared.repos import ImageRepo

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def entry(i: int, *, status_image: str | None = None, **link: Any) -> dict[str, Any]:
    return {
        "_id": f"h{i}",
        "link_id": f"L{i}",
        "image_id": status_image or f"img{i}",
        "expires_at": LATER,
        "alive_until": LATER,
        "remaining": 3,
        "gallery": {
            "category": "nature" if i % 2 else "memes",
            "public_id": f"{i:032x}",
            "listed_at": NOW - timedelta(seconds=100 - i),
        },
        **link,
    }


# --- cursors ---------------------------------------------------------------------------------


def test_opaque_cursor_round_trips_to_the_millisecond() -> None:
    at = datetime(2026, 12, 3, 12, 0, 5, 123000, tzinfo=UTC)
    text = Cursor(at, "ab" * 16).encode()
    assert parse_cursor(text) == Cursor(at, "ab" * 16)
    assert parse_cursor(Cursor(at).encode()) == Cursor(at)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T12:00:00Z", datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),
        ("2026-12-03T12:00:00+00:00", datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),
        ("2026-12-03T12:00:00 00:00", datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),  # '+' unencoded
        ("2026-12-03T13:00:00+01:00", datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),
        ("2026-12-03T12:00:00", datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),  # naive = UTC
    ],
)
def test_iso_cursor_means_strictly_before_that_time(text: str, expected: datetime) -> None:
    cursor = parse_cursor(text)
    assert cursor is not None and cursor.listed_at == expected and cursor.public_id == ""


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_cursor_is_the_newest_page(text: str | None) -> None:
    assert parse_cursor(text) is None


@pytest.mark.parametrize(
    "text", ["yesterday", "12-XYZ", "2026-13-45", "9" * 40, "1-" + "a" * 200, "-5", "1.5"]
)
def test_a_bad_cursor_is_a_400_with_a_code(text: str) -> None:
    with pytest.raises(DomainError) as refused:
        parse_cursor(text)
    assert refused.value.status == 400 and refused.value.code == "invalid_cursor"


# --- the query -------------------------------------------------------------------------------


def test_query_keeps_only_live_public_links_of_the_category_older_than_the_cursor() -> None:
    q = listing_query("nature", Cursor(NOW, "ff"), NOW)
    assert q["gallery.category"] == "nature"
    assert q["revoked"] == {"$ne": True} and q["remaining"] == {"$gt": 0}
    assert q["expires_at"] == {"$gt": NOW} and q["alive_until"] == {"$gt": NOW}
    assert q["gallery.listed_at"] == {"$exists": True}
    assert q["$or"] == [
        {"gallery.listed_at": {"$lt": NOW}},
        {"gallery.listed_at": NOW, "gallery.public_id": {"$lt": "ff"}},
    ]
    every = listing_query(None, Cursor(NOW), NOW)
    assert "gallery.category" not in every and "$or" not in every
    assert every["gallery.listed_at"] == {"$lt": NOW}


# --- visibility ------------------------------------------------------------------------------


def test_a_live_entry_of_a_cleared_image_is_visible() -> None:
    assert visible(entry(1), {"img1": "cleared"}, NOW)


@pytest.mark.parametrize(
    "status", ["pending", "review", "blocked", "removed", "expired", "deleted", "", "surprise"]
)
def test_any_status_but_cleared_hides_the_entry(status: str) -> None:
    assert not visible(entry(1), {"img1": status}, NOW)


def test_an_image_missing_from_the_statuses_is_hidden() -> None:
    assert not visible(entry(1), {}, NOW)


@pytest.mark.parametrize(
    "ended",
    [
        {"expires_at": NOW - timedelta(seconds=1)},  # expired
        {"remaining": 0},  # used up
        {"revoked": True, "ended_reason": "revoked"},
        {"revoked": True, "ended_reason": "removed"},
        {"alive_until": NOW},  # end of session lapsed
    ],
)
def test_an_ended_link_hides_the_entry(ended: dict[str, Any]) -> None:
    assert not visible(entry(1, **ended), {"img1": "cleared"}, NOW)


def test_private_and_password_links_are_never_listed() -> None:
    private = entry(1)
    del private["gallery"]
    assert not visible(private, {"img1": "cleared"}, NOW)
    assert not visible(entry(1, password_hash="$argon2id$x"), {"img1": "cleared"}, NOW)


def test_naive_datetimes_from_the_database_count_as_utc() -> None:
    naive = entry(1, expires_at=LATER.replace(tzinfo=None), alive_until=None)
    assert visible(naive, {"img1": "cleared"}, NOW)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "just now"), (59, "just now"), (60, "1 min ago"), (7200, "2 h ago"), (90000, "1 d ago")],
)
def test_age_text(seconds: int, text: str) -> None:
    assert gallery.age_text(NOW - timedelta(seconds=seconds), NOW) == text


# --- paging ----------------------------------------------------------------------------------


def _get(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None  # type: ignore[assignment]
    return doc


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    """Just the operators listing_query uses."""
    for key, cond in query.items():
        if key == "$or":
            if not any(_matches(doc, q) for q in cond):
                return False
            continue
        value = _get(doc, key)
        if not isinstance(cond, dict):
            if value != cond:
                return False
            continue
        for op, arg in cond.items():
            ok = {
                "$exists": lambda v, a: (v is not None) == a,
                "$ne": lambda v, a: v != a,
                "$gt": lambda v, a: v is not None and v > a,
                "$lt": lambda v, a: v is not None and v < a,
            }[op](value, arg)
            if not ok:
                return False
    return True


class Links:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.batches = 0

    def gallery_batch(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        self.batches += 1
        found = [d for d in self.docs if _matches(d, query)]
        found.sort(key=lambda d: (d["gallery"]["listed_at"], d["gallery"]["public_id"]))
        return list(reversed(found))[:limit]


class Statuses:
    def __init__(self, status: dict[str, str]) -> None:
        self.status = status
        self.calls = 0

    def statuses(self, image_ids: list[str]) -> dict[str, str]:
        self.calls += 1
        return {i: self.status[i] for i in image_ids if i in self.status}


def page(
    links: Links, images: Statuses, before: str | None = None, size: int = 4, **kw: Any
) -> gallery.GalleryPage:
    return gallery.list_page(
        images=cast(ImageRepo, images),
        links=cast(LinkRepo, links),
        category=kw.pop("category", None),
        before=parse_cursor(before),
        at=NOW,
        page_size=size,
        **kw,
    )


def test_pages_are_newest_first_and_the_cursor_continues_without_gaps_or_repeats() -> None:
    docs = [entry(i) for i in range(10)]
    # Two entries listed in the same millisecond: the public id breaks the tie.
    docs[4]["gallery"]["listed_at"] = docs[5]["gallery"]["listed_at"]
    links = Links(docs)
    images = Statuses({f"img{i}": "cleared" for i in range(10)})
    seen: list[str] = []
    before = None
    for _ in range(5):
        got = page(links, images, before)
        seen += [c.public_id for c in got.cards]
        before = got.older
        if before is None:
            break
    assert seen == [f"{i:032x}" for i in reversed(range(10))]


def test_hidden_entries_are_skipped_and_the_page_is_filled_from_the_next_batch() -> None:
    docs = [entry(i) for i in range(12)]
    status = {f"img{i}": "cleared" for i in range(12)}
    for i in (11, 10, 9, 7):  # the newest ones are held or removed
        status[f"img{i}"] = "review" if i % 2 else "removed"
    links, images = Links(docs), Statuses(status)
    got = page(links, images)
    assert [c.public_id for c in got.cards] == [f"{i:032x}" for i in (8, 6, 5, 4)]
    assert images.calls == links.batches == 2  # one status read per batch, not per entry
    rest = page(links, images, got.older)
    assert [c.public_id for c in rest.cards] == [f"{i:032x}" for i in (3, 2, 1, 0)]
    assert rest.older is None


def test_a_page_filters_by_category() -> None:
    links = Links([entry(i) for i in range(8)])
    images = Statuses({f"img{i}": "cleared" for i in range(8)})
    got = page(links, images, category="memes", size=10)
    assert [c.category for c in got.cards] == ["memes"] * 4 and got.older is None


def test_the_scan_is_bounded_and_the_cursor_resumes_where_it_stopped() -> None:
    docs = [entry(i) for i in range(30)]
    status = {f"img{i}": "removed" for i in range(30)}
    status["img0"] = "cleared"
    links, images = Links(docs), Statuses(status)
    got = page(links, images, size=4, max_batches=2)
    assert got.cards == [] and got.older is not None and links.batches == 2
    for _ in range(10):
        got = page(links, images, got.older, size=4, max_batches=2)
        if got.cards:
            break
    assert [c.public_id for c in got.cards] == [f"{0:032x}"]


def test_an_exactly_full_last_page_says_nothing_is_older() -> None:
    links = Links([entry(i) for i in range(4)])
    images = Statuses({f"img{i}": "cleared" for i in range(4)})
    got = page(links, images, size=4)
    assert len(got.cards) == 4 and got.older is None


def test_cards_say_category_age_and_views() -> None:
    links = Links([entry(1, remaining=2)])
    got = page(links, Statuses({"img1": "cleared"}))
    (c,) = got.cards
    assert c.category == "nature" and c.views_left == 2 and c.age == "1 min ago"
    assert c.expires_at == LATER
