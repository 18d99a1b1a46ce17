"""Pure decision rule: model score + hash-bank match -> verdict. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.scanner.hashing import HashMatch
from services.shared.status import Verdict

_SEVERITY = {Verdict.CLEARED: 0, Verdict.REVIEW: 1, Verdict.BLOCKED: 2}


@dataclass(frozen=True)
class PolicyThresholds:
    review: float = 0.45
    blocked: float = 0.8
    hash_max_distance: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.blocked <= 1.0:
            raise ValueError(f"need 0 <= review <= blocked <= 1, got {self}")
        if self.hash_max_distance < 0:
            raise ValueError(f"hash_max_distance must be >= 0, got {self.hash_max_distance}")


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


def _score_verdict(nsfw: float, t: PolicyThresholds) -> tuple[Verdict, str | None]:
    if isinstance(nsfw, bool) or not isinstance(nsfw, (int, float)):
        return Verdict.REVIEW, "invalid_score"
    if not math.isfinite(nsfw) or not 0.0 <= nsfw <= 1.0:
        return Verdict.REVIEW, "invalid_score"
    if nsfw >= t.blocked:
        return Verdict.BLOCKED, "nsfw_score"
    if nsfw >= t.review:
        return Verdict.REVIEW, "nsfw_score"
    return Verdict.CLEARED, None


def decide(nsfw: float, match: HashMatch | None, hashable: bool, t: PolicyThresholds) -> Decision:
    """Most severe of the hash-bank outcome and the model-score outcome; fails closed.

    A match within ``t.hash_max_distance`` blocks outright when the image is hashable. On an
    unhashable image (tiny/flat, degenerate hash) it only sends the image to review, but the
    model score is still applied so it can escalate to BLOCKED.
    """
    if match is not None and match.distance <= t.hash_max_distance:
        if hashable:
            return Decision(Verdict.BLOCKED, (f"hash_match:{match.bank}",))
        verdict, reasons = Verdict.REVIEW, [f"hash_match_unhashable:{match.bank}"]
    else:
        verdict, reasons = Verdict.CLEARED, []
    score_verdict, score_reason = _score_verdict(nsfw, t)
    if score_reason is not None:
        reasons.append(score_reason)
    if _SEVERITY[score_verdict] > _SEVERITY[verdict]:
        verdict = score_verdict
    return Decision(verdict, tuple(reasons))
