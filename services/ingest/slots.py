"""A bounded number of decodes at once, off the event loop.

Each decode of a large photo holds hundreds of MB of pixels for a moment; with one thread per
request, a burst of uploads multiplied that (8 concurrent uploaders drove ingest past 500 MB).
Uploads beyond the slots wait their turn, their bodies already read, so memory stays near
``slots`` decodes' worth whatever the concurrency, and nothing is refused for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from services.ingest.metrics import DECODES_WAITING

T = TypeVar("T")


class Slots:
    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.slots)
        DECODES_WAITING.inc()
        waiting = True
        try:
            async with self._limiter:
                DECODES_WAITING.dec()
                waiting = False
                return await anyio.to_thread.run_sync(lambda: fn(*args))
        finally:
            if waiting:
                DECODES_WAITING.dec()
