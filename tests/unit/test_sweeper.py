"""The sweeper's decision: when an image's bytes must go, and until when they stay."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.links.sweeper import (
    FETCH_GRACE_S,
    Decision,
    Defer,
    Purge,
    SweepResult,
    decide,
    sweeper_loop,
)

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
TTL_S = 15 * 60


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def image(status: str = "cleared", **extra: Any) -> dict[str, Any]:
    return {
        "_id": "i" * 32,
        "status": status,
        "created_at": ago(3600),
        "scanned_at": ago(3590),
        "linked_at": ago(3500),
        **extra,
    }


def link(**extra: Any) -> dict[str, Any]:
    """A normal link, live by default: views left, alive_until == expires_at in the future."""
    doc: dict[str, Any] = {
        "image_id": "i" * 32,
        "expires_at": later(600),
        "alive_until": later(600),
        "max_views": 3,
        "remaining": 2,
        "views": 1,
    }
    doc.update(extra)
    return doc


def ticket(**extra: Any) -> dict[str, Any]:
    return {"image_id": "i" * 32, "expires_at": later(40), "used_at": None, **extra}


CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], Decision]] = [
    # (case, image, links, tickets, decision)
    ("live link keeps bytes until it ends", image(), [link()], [], Defer(later(600))),
    (
        "the latest of several live links counts",
        image(),
        [link(), link(expires_at=later(9000), alive_until=later(9000)), link(remaining=0)],
        [],
        Defer(later(9000)),
    ),
    ("used-up link", image(), [link(remaining=0, views=3)], [], Purge("links_ended")),
    (
        "revoked link",
        image(),
        [link(revoked=True, ended_reason="revoked")],
        [],
        Purge("links_ended"),
    ),
    (
        "link expired by time",
        image(),
        [link(expires_at=ago(1), alive_until=ago(1))],
        [],
        Purge("links_ended"),
    ),
    (
        "link expiring this very instant is over",
        image(),
        [link(expires_at=NOW, alive_until=NOW)],
        [],
        Purge("links_ended"),
    ),
    (
        "session link whose heartbeat lapsed",
        image(),
        [link(end_of_session=True, alive_until=ago(5), expires_at=later(3600))],
        [],
        Purge("links_ended"),
    ),
    (
        "session link still beating keeps bytes until alive_until, not expires_at",
        image(),
        [link(end_of_session=True, alive_until=later(45), expires_at=later(3600))],
        [],
        Defer(later(45)),
    ),
    (
        "alive_until never outlives expires_at",
        image(),
        [link(alive_until=later(900), expires_at=later(300))],
        [],
        Defer(later(300)),
    ),
    (
        "old link without alive_until falls back to expires_at",
        image(),
        [{k: v for k, v in link().items() if k != "alive_until"}],
        [],
        Defer(later(600)),
    ),
    (
        "link without a remaining count serves nothing",
        image(),
        [{k: v for k, v in link().items() if k != "remaining"}],
        [],
        Purge("links_ended"),
    ),
    (
        "unused ticket keeps bytes after the last view was spent",
        image(),
        [link(remaining=0)],
        [ticket()],
        Defer(later(40)),
    ),
    (
        "used ticket does not",
        image(),
        [link(remaining=0)],
        [ticket(used_at=ago(FETCH_GRACE_S + 1))],
        Purge("links_ended"),
    ),
    (
        "a ticket used just now keeps bytes while the fetch completes",
        image(),
        [link(remaining=0)],
        [ticket(used_at=ago(1))],
        Defer(ago(1) + timedelta(seconds=FETCH_GRACE_S)),
    ),
    (
        "expired unused ticket does not",
        image(),
        [link(remaining=0)],
        [ticket(expires_at=ago(1))],
        Purge("links_ended"),
    ),
    (
        "live link and later ticket: the later wins",
        image(),
        [link(expires_at=later(10), alive_until=later(10))],
        [ticket(expires_at=later(50))],
        Defer(later(50)),
    ),
    (
        "link documents gone (TTL) but the image was linked",
        image(linked_at=ago(10)),
        [],
        [],
        Purge("links_ended"),
    ),
    (
        "unlinked and young: wait for the unlinked TTL",
        image(scanned_at=ago(60), linked_at=None),
        [],
        [],
        Defer(ago(60) + timedelta(seconds=TTL_S)),
    ),
    (
        "unlinked and old",
        image(scanned_at=ago(TTL_S + 1), linked_at=None),
        [],
        [],
        Purge("unlinked"),
    ),
    (
        "unlinked exactly at the TTL",
        image(scanned_at=ago(TTL_S), linked_at=None),
        [],
        [],
        Purge("unlinked"),
    ),
    (
        "unlinked clock starts at a later clearance by a reviewer",
        image(scanned_at=ago(7200), cleared_at=ago(60), linked_at=None),
        [],
        [],
        Defer(ago(60) + timedelta(seconds=TTL_S)),
    ),
    ("deleted by the owner", image("deleted"), [link()], [ticket()], Purge("deleted")),
    (
        "expired but purge stopped half-way: finish it with the reason it had",
        image("expired", purge_reason="unlinked"),
        [],
        [],
        Purge("unlinked"),
    ),
    ("expired and purged", image("expired", purged_at=ago(5)), [], [], None),
    ("deleted and purged", image("deleted", purged_at=ago(5)), [], [], None),
    ("pending: not the sweeper's", image("pending", scanned_at=None), [], [], None),
    ("review: not the sweeper's", image("review", linked_at=None), [], [], None),
    ("blocked: evidence belongs to moderation", image("blocked"), [], [], None),
    ("removed: evidence belongs to moderation", image("removed"), [link(remaining=0)], [], None),
    ("unknown status: not the sweeper's", image("mystery"), [], [], None),
    ("kept by a room, no links", image(kept_until=later(300)), [], [], Defer(later(300))),
    ("a room's keep ended, no links", image(kept_until=ago(1)), [], [], Purge("kept_ended")),
    (
        "a room keeps it longer than its link",
        image(kept_until=later(900)),
        [link()],
        [],
        Defer(later(900)),
    ),
    (
        "a link keeps it after the room ended",
        image(kept_until=ago(60)),
        [link()],
        [],
        Defer(later(600)),
    ),
    (
        "room ended and its link ended",
        image(kept_until=ago(60)),
        [link(remaining=0)],
        [],
        Purge("links_ended"),
    ),
]


@pytest.mark.parametrize(
    ("doc", "links", "tickets", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    doc: dict[str, Any],
    links: list[dict[str, Any]],
    tickets: list[dict[str, Any]],
    expected: Decision,
) -> None:
    assert decide(doc, links, tickets, NOW, TTL_S) == expected


def test_decide_reads_naive_datetimes_as_utc() -> None:
    """A client opened without tz_aware hands back naive UTC datetimes."""
    naive = later(600).replace(tzinfo=None)
    assert decide(image(), [link(expires_at=naive, alive_until=naive)], [], NOW, TTL_S) == Defer(
        later(600)
    )
    assert decide(image(), [link()], [], NOW.replace(tzinfo=None), TTL_S) == Defer(later(600))


def test_sweeper_loop_survives_failures_and_keeps_going() -> None:
    calls: list[str] = []
    errors: list[Exception] = []
    results: list[SweepResult] = []

    def sweep() -> SweepResult:
        calls.append("x")
        if len(calls) == 1:
            raise RuntimeError("database down")
        return SweepResult(purged=1, by_reason={"unlinked": 1})

    async def run() -> None:
        task = asyncio.create_task(
            sweeper_loop(sweep, 0.01, on_result=results.append, on_error=errors.append)
        )
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # In its own thread: a session-wide browser fixture may hold this thread's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=30)
    assert len(errors) == 1 and str(errors[0]) == "database down"
    assert results and results[0].by_reason == {"unlinked": 1}
