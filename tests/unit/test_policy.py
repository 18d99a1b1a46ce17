"""Decision table for services.scanner.policy.decide (pure)."""

from __future__ import annotations

import math

import pytest

from services.scanner.hashing import HashMatch
from services.scanner.policy import (
    Decision,
    LabelThresholds,
    PolicyThresholds,
    decide,
    decide_labels,
    label_verdict,
)
from services.shared.status import Verdict

T = PolicyThresholds()


def _match(distance: int, bank: str = "csam-bank") -> HashMatch:
    return HashMatch("e1", bank, "00000000000000ff", "known", distance)


def test_defaults() -> None:
    assert (T.review, T.blocked, T.hash_max_distance) == (0.45, 0.8, 8)


@pytest.mark.parametrize(
    ("nsfw", "match", "hashable", "expected"),
    [
        # no hash match: the score decides
        (0.0, None, True, Decision(Verdict.CLEARED, ())),
        (0.4499, None, True, Decision(Verdict.CLEARED, ())),
        (0.45, None, True, Decision(Verdict.REVIEW, ("nsfw_score",))),
        (0.7999, None, True, Decision(Verdict.REVIEW, ("nsfw_score",))),
        (0.8, None, True, Decision(Verdict.BLOCKED, ("nsfw_score",))),
        (1.0, None, False, Decision(Verdict.BLOCKED, ("nsfw_score",))),
        # hash match within distance on a hashable image blocks regardless of the score
        (0.0, _match(0), True, Decision(Verdict.BLOCKED, ("hash_match:csam-bank",))),
        (0.0, _match(8), True, Decision(Verdict.BLOCKED, ("hash_match:csam-bank",))),
        (math.nan, _match(3), True, Decision(Verdict.BLOCKED, ("hash_match:csam-bank",))),
        # ...on an unhashable (tiny/flat) image it only asks for review
        (
            0.0,
            _match(0, "b2"),
            False,
            Decision(Verdict.REVIEW, ("hash_match_unhashable:b2",)),
        ),
        # ...but a high score still blocks
        (
            0.9,
            _match(0, "b2"),
            False,
            Decision(Verdict.BLOCKED, ("hash_match_unhashable:b2", "nsfw_score")),
        ),
        # a match beyond the distance is ignored
        (0.0, _match(9), True, Decision(Verdict.CLEARED, ())),
        (0.5, _match(9), False, Decision(Verdict.REVIEW, ("nsfw_score",))),
    ],
)
def test_decision_table(
    nsfw: float, match: HashMatch | None, hashable: bool, expected: Decision
) -> None:
    assert decide(nsfw, match, hashable, T) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.01, 1.01])
def test_invalid_score_fails_closed_to_review(bad: float) -> None:
    assert decide(bad, None, True, T) == Decision(Verdict.REVIEW, ("invalid_score",))
    assert decide(bad, _match(20), True, T).verdict is Verdict.REVIEW


def test_non_numeric_score_fails_closed() -> None:
    assert decide("0.1", None, True, T).verdict is Verdict.REVIEW  # type: ignore[arg-type]
    assert decide(None, None, True, T).verdict is Verdict.REVIEW  # type: ignore[arg-type]


def test_custom_thresholds() -> None:
    strict = PolicyThresholds(review=0.1, blocked=0.2, hash_max_distance=0)
    assert decide(0.15, None, True, strict).verdict is Verdict.REVIEW
    assert decide(0.2, None, True, strict).verdict is Verdict.BLOCKED
    assert decide(0.0, _match(1), True, strict).verdict is Verdict.CLEARED
    assert decide(0.0, _match(0), True, strict).verdict is Verdict.BLOCKED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"review": 0.9, "blocked": 0.8},
        {"review": -0.1},
        {"blocked": 1.5},
        {"hash_max_distance": -1},
    ],
)
def test_inconsistent_thresholds_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PolicyThresholds(**kwargs)  # type: ignore[arg-type]


# --- per-label thresholds (a model card's) ---------------------------------------------------

CARD = {
    "A_EXPOSED": LabelThresholds(review=0.45, blocked=0.8),
    "B_EXPOSED": LabelThresholds(review=0.3, blocked=0.6),
}


def _scores(a: float = 0.0, b: float = 0.0, **other: float) -> dict[str, float]:
    return {"A_EXPOSED": a, "B_EXPOSED": b, "FACE": 0.99, **other}


@pytest.mark.parametrize(
    ("scores", "match", "hashable", "expected"),
    [
        (_scores(), None, True, Decision(Verdict.CLEARED, ())),
        # unthresholded labels never count
        (_scores(FACE=1.0), None, True, Decision(Verdict.CLEARED, ())),
        (_scores(a=0.4499), None, True, Decision(Verdict.CLEARED, ())),
        (_scores(a=0.45), None, True, Decision(Verdict.REVIEW, ("nsfw_review:A_EXPOSED",))),
        (_scores(a=0.8), None, True, Decision(Verdict.BLOCKED, ("nsfw_blocked:A_EXPOSED",))),
        # each label has its own thresholds
        (_scores(b=0.45), None, True, Decision(Verdict.REVIEW, ("nsfw_review:B_EXPOSED",))),
        (_scores(b=0.6), None, True, Decision(Verdict.BLOCKED, ("nsfw_blocked:B_EXPOSED",))),
        # every label that triggers is named; the most severe wins
        (
            _scores(a=0.5, b=0.7),
            None,
            True,
            Decision(Verdict.BLOCKED, ("nsfw_review:A_EXPOSED", "nsfw_blocked:B_EXPOSED")),
        ),
        # hash rules as in decide()
        (_scores(b=0.9), _match(0), True, Decision(Verdict.BLOCKED, ("hash_match:csam-bank",))),
        (
            _scores(),
            _match(0, "b2"),
            False,
            Decision(Verdict.REVIEW, ("hash_match_unhashable:b2",)),
        ),
        (
            _scores(a=0.9),
            _match(0, "b2"),
            False,
            Decision(Verdict.BLOCKED, ("hash_match_unhashable:b2", "nsfw_blocked:A_EXPOSED")),
        ),
        (_scores(), _match(9), True, Decision(Verdict.CLEARED, ())),
    ],
)
def test_label_decision_table(
    scores: dict[str, float], match: HashMatch | None, hashable: bool, expected: Decision
) -> None:
    assert decide_labels(scores, CARD, match, hashable, T.hash_max_distance) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.01, 1.01, "0.1", None, True])
def test_invalid_label_score_fails_closed(bad: object) -> None:
    scores: dict[str, object] = {**_scores(), "B_EXPOSED": bad}
    decision = decide_labels(scores, CARD, None, True, 8)  # type: ignore[arg-type]
    assert decision == Decision(Verdict.REVIEW, ("invalid_score:B_EXPOSED",))
    # ...but a blocked label still blocks
    scores["A_EXPOSED"] = 0.95
    assert decide_labels(scores, CARD, None, True, 8).verdict is Verdict.BLOCKED  # type: ignore[arg-type]


def test_missing_label_and_missing_thresholds_fail_closed() -> None:
    assert label_verdict({"A_EXPOSED": 0.0}, CARD) == (
        Verdict.REVIEW,
        ["invalid_score:B_EXPOSED"],
    )
    assert label_verdict({"A_EXPOSED": 0.0}, {}) == (Verdict.REVIEW, ["no_thresholds"])


@pytest.mark.parametrize(
    ("review", "blocked"), [(0.9, 0.8), (-0.1, 0.5), (0.5, 1.5), (math.nan, 0.5)]
)
def test_inconsistent_label_thresholds_are_rejected(review: float, blocked: float) -> None:
    with pytest.raises(ValueError):
        LabelThresholds(review, blocked)
