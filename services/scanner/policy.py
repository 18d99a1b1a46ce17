"""Pure decision rule: model scores + hash-bank match -> verdict. No I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from services.scanner.hashing import HashMatch
from services.shared.status import Verdict

_SEVERITY = {Verdict.CLEARED: 0, Verdict.REVIEW: 1, Verdict.BLOCKED: 2}


@dataclass(frozen=True)
class PolicyThresholds:
    """Hash-match distance, plus the single-score thresholds of :func:`decide`.

    ``review``/``blocked`` are the defaults for the built-in card's exposed-explicit labels
    (``CHATPIC_REVIEW_THRESHOLD`` / ``CHATPIC_BLOCKED_THRESHOLD``); per-label thresholds live on
    the model card and are applied by :func:`decide_labels`.
    """

    review: float = 0.45
    blocked: float = 0.8
    hash_max_distance: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.blocked <= 1.0:
            raise ValueError(f"need 0 <= review <= blocked <= 1, got {self}")
        if self.hash_max_distance < 0:
            raise ValueError(f"hash_max_distance must be >= 0, got {self.hash_max_distance}")


@dataclass(frozen=True)
class LabelThresholds:
    """One label's thresholds: score >= ``review`` -> REVIEW, >= ``blocked`` -> BLOCKED."""

    review: float
    blocked: float

    def __post_init__(self) -> None:
        for value in (self.review, self.blocked):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"thresholds must be numbers, got {self}")
        if not 0.0 <= self.review <= self.blocked <= 1.0:
            raise ValueError(
                f"need 0 <= review <= blocked <= 1, got review={self.review} blocked={self.blocked}"
            )


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


def _valid_score(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and 0.0 <= value <= 1.0


def _score_verdict(nsfw: float, t: PolicyThresholds) -> tuple[Verdict, list[str]]:
    if not _valid_score(nsfw):
        return Verdict.REVIEW, ["invalid_score"]
    if nsfw >= t.blocked:
        return Verdict.BLOCKED, ["nsfw_score"]
    if nsfw >= t.review:
        return Verdict.REVIEW, ["nsfw_score"]
    return Verdict.CLEARED, []


def label_verdict(
    scores: Mapping[str, float], thresholds: Mapping[str, LabelThresholds]
) -> tuple[Verdict, list[str]]:
    """Model-only verdict: most severe over the thresholded labels; fails closed.

    A label over its ``blocked`` gives ``nsfw_blocked:<label>``, over its ``review``
    ``nsfw_review:<label>``; a missing, NaN, non-numeric or out-of-range score gives
    ``invalid_score:<label>`` and at least REVIEW. No thresholds at all is REVIEW too.
    """
    if not thresholds:
        return Verdict.REVIEW, ["no_thresholds"]
    verdict, reasons = Verdict.CLEARED, []
    for label, t in thresholds.items():
        value = scores.get(label) if isinstance(scores, Mapping) else None
        if not _valid_score(value):
            level, reason = Verdict.REVIEW, f"invalid_score:{label}"
        elif value >= t.blocked:  # type: ignore[operator]
            level, reason = Verdict.BLOCKED, f"nsfw_blocked:{label}"
        elif value >= t.review:  # type: ignore[operator]
            level, reason = Verdict.REVIEW, f"nsfw_review:{label}"
        else:
            continue
        reasons.append(reason)
        if _SEVERITY[level] > _SEVERITY[verdict]:
            verdict = level
    return verdict, reasons


def _combine(
    score_verdict: Verdict,
    score_reasons: list[str],
    match: HashMatch | None,
    hashable: bool,
    hash_max_distance: int,
) -> Decision:
    if match is not None and match.distance <= hash_max_distance:
        if hashable:
            return Decision(Verdict.BLOCKED, (f"hash_match:{match.bank}",))
        verdict, reasons = Verdict.REVIEW, [f"hash_match_unhashable:{match.bank}"]
    else:
        verdict, reasons = Verdict.CLEARED, []
    reasons.extend(score_reasons)
    if _SEVERITY[score_verdict] > _SEVERITY[verdict]:
        verdict = score_verdict
    return Decision(verdict, tuple(reasons))


def decide(nsfw: float, match: HashMatch | None, hashable: bool, t: PolicyThresholds) -> Decision:
    """Most severe of the hash-bank outcome and the model-score outcome; fails closed.

    A match within ``t.hash_max_distance`` blocks outright when the image is hashable. On an
    unhashable image (tiny/flat, degenerate hash) it only sends the image to review, but the
    model score is still applied so it can escalate to BLOCKED.
    """
    score_verdict, score_reasons = _score_verdict(nsfw, t)
    return _combine(score_verdict, score_reasons, match, hashable, t.hash_max_distance)


def decide_labels(
    scores: Mapping[str, float],
    thresholds: Mapping[str, LabelThresholds],
    match: HashMatch | None,
    hashable: bool,
    hash_max_distance: int,
) -> Decision:
    """As :func:`decide`, with the model outcome from per-label thresholds (a model card's)."""
    score_verdict, score_reasons = label_verdict(scores, thresholds)
    return _combine(score_verdict, score_reasons, match, hashable, hash_max_distance)
