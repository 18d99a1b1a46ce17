"""Ingest decodes at most CHATPIC_INTAKE_CONCURRENCY photos at once; the rest wait, and none is
refused for it. The glibc arena cap applies at service start."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio

from services.ingest.metrics import DECODES_WAITING
from services.ingest.slots import Slots

T = TypeVar("T")


def run_in_own_thread(main: Callable[[], Awaitable[T]]) -> T:
    """anyio.run on a thread of its own: other tests in the session (Playwright's sync API)
    leave an event loop running on the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, main).result(timeout=60)


def test_no_more_than_the_slots_decode_at_once_and_every_call_finishes() -> None:
    running, peak, lock = [0], [0], threading.Lock()
    waiting_seen: list[float] = []

    def decode(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        waiting_seen.append(DECODES_WAITING._value.get())
        with lock:
            running[0] -= 1
        return n * 2

    async def main() -> list[int]:
        slots = Slots(2)
        results: list[int] = []

        async def one(n: int) -> None:
            results.append(await slots.run(decode, n))

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(one, n)
        return results

    results = run_in_own_thread(main)
    assert sorted(results) == [n * 2 for n in range(8)]
    assert peak[0] == 2
    assert max(waiting_seen) >= 1  # the others were counted as waiting
    assert DECODES_WAITING._value.get() == 0  # and nobody is left counted


def test_a_failing_decode_frees_its_slot() -> None:
    def boom() -> None:
        raise ValueError("corrupt")

    async def main() -> str:
        slots = Slots(1)
        for _ in range(3):
            with contextlib.suppress(ValueError):
                await slots.run(boom)
        return await slots.run(lambda: "still works")

    assert run_in_own_thread(main) == "still works"
    assert DECODES_WAITING._value.get() == 0


def test_the_arena_cap_takes_effect_unless_the_environment_decided() -> None:
    code = "from services.shared.memory import limit_malloc_arenas as f; print(f())"
    env_free = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert env_free.stdout.strip() == "True"
    decided = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "4"},
    )
    assert decided.stdout.strip() == "False"
