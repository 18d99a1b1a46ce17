"""Fixed-window rate limits shared by every process through MongoDB (one conditional upsert
per hit, TTL-expired windows). Keys are salted client hashes, never addresses."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.collection import Collection

from services.shared.mongo import Doc


@dataclass(frozen=True)
class Allowance:
    allowed: bool
    retry_after_s: int
    remaining: int


class RateLimiter:
    def __init__(self, col: Collection[Doc], *, name: str, limit: int, window_s: int) -> None:
        self.col = col
        self.name = name
        self.limit = limit
        self.window_s = window_s

    def ensure_indexes(self) -> None:
        self.col.create_index("expires_at", expireAfterSeconds=0)

    def peek(self, key: str, now: float | None = None) -> Allowance:
        """Where ``key`` stands in this window, counting nothing."""
        t = time.time() if now is None else now
        window = int(t // self.window_s)
        ends = (window + 1) * self.window_s
        doc = self.col.find_one({"_id": f"{self.name}:{key}:{window}"})
        count = int(doc["count"]) if doc else 0
        if count >= self.limit:
            return Allowance(False, max(1, math.ceil(ends - t)), 0)
        return Allowance(True, 0, self.limit - count)

    def hit(self, key: str, cost: int = 1, now: float | None = None) -> Allowance:
        t = time.time() if now is None else now
        window = int(t // self.window_s)
        ends = (window + 1) * self.window_s
        doc_id = f"{self.name}:{key}:{window}"
        self.col.update_one(
            {"_id": doc_id},
            {
                "$inc": {"count": cost},
                "$setOnInsert": {
                    "expires_at": datetime.fromtimestamp(ends, UTC) + timedelta(seconds=60)
                },
            },
            upsert=True,
        )
        doc = self.col.find_one({"_id": doc_id}) or {"count": cost}
        count = int(doc["count"])
        if count > self.limit:
            return Allowance(False, max(1, math.ceil(ends - t)), 0)
        return Allowance(True, 0, self.limit - count)
