"""Bank-matching benchmark: multi-index hashing against numpy brute force and faiss, same run.

1M random 64-bit hashes, radius 8: median per-query ``nearest`` time for MIH, numpy brute force
(``np.bitwise_count`` of XOR) and, if importable, faiss ``IndexBinaryFlat.range_search``, over
the same queries (half with a planted match); every MIH answer is checked against brute force.
10M hashes: MIH median query time and memory (index arrays and RSS growth while building).

Run: ``python -m bench.index_bench`` (``BENCH_QUERIES``, ``BENCH_BIG`` to change the sizes).
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from services.scanner.mih import MultiIndexHashIndex

RADIUS = 8
SMALL = 1_000_000
U64 = npt.NDArray[np.uint64]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _bank_and_queries(rng: np.random.Generator, n: int, count: int) -> tuple[U64, list[int]]:
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64)
    queries = rng.integers(0, 2**64, count, dtype=np.uint64).tolist()
    for i in range(0, count, 2):  # half the queries: a bank hash with 0..RADIUS bits flipped
        value = int(hashes[int(rng.integers(n))])
        for bit in rng.choice(64, size=int(rng.integers(RADIUS + 1)), replace=False).tolist():
            value ^= 1 << bit
        queries[i] = value
    return hashes, queries


_SCRATCH: list[npt.NDArray[np.uint8]] = []


def _evict_caches() -> None:
    """Stream through 64 MB so the next query starts with cold CPU caches (as in the scanner,
    where image decoding runs between bank look-ups)."""
    if not _SCRATCH:
        _SCRATCH.append(np.ones(64 << 20, dtype=np.uint8))
    _SCRATCH[0] += 1


def _median_ms(fn: Callable[[int], object], queries: list[int], cold: bool = False) -> float:
    for q in queries[:20]:  # warm-up
        fn(q)
    times = []
    for q in queries:
        if cold:
            _evict_caches()
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _brute(hashes: U64) -> Callable[[int], tuple[int, int] | None]:
    def nearest(query: int) -> tuple[int, int] | None:
        distances = np.bitwise_count(hashes ^ np.uint64(query))
        best = int(np.argmin(distances))
        d = int(distances[best])
        return (best, d) if d <= RADIUS else None

    return nearest


def _faiss(hashes: U64) -> Callable[[int], tuple[int, int] | None] | None:
    try:
        import faiss  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)
    index = faiss.IndexBinaryFlat(64)
    index.add(hashes.view(np.uint8).reshape(-1, 8))

    def nearest(query: int) -> tuple[int, int] | None:
        q = np.array([query], dtype=np.uint64).view(np.uint8).reshape(1, 8)
        _, dist, ids = index.range_search(q, RADIUS + 1)  # faiss keeps d < threshold
        if dist.size == 0:
            return None
        best = np.lexsort((ids, dist))[0]
        return int(ids[best]), int(dist[best])

    return nearest


def main() -> int:
    count = int(os.environ.get("BENCH_QUERIES", "1000"))
    big = int(os.environ.get("BENCH_BIG", "10000000"))
    rng = np.random.default_rng(2024)
    hashes, queries = _bank_and_queries(rng, SMALL, count)
    hex_queries = {q: f"{q:016x}" for q in queries}
    start = time.perf_counter()
    mih = MultiIndexHashIndex.from_arrays(hashes, np.arange(SMALL))
    build = time.perf_counter() - start

    def mih_nearest(query: int) -> tuple[int, int] | None:
        m = mih.nearest(hex_queries[query], RADIUS)
        return None if m is None else (int(m.entry_id), m.distance)

    brute = _brute(hashes)
    hits = 0
    for q in queries:  # exactness on every benchmark query
        expected = brute(q)
        assert mih_nearest(q) == expected, f"{q:016x}"
        hits += expected is not None
    faiss_nearest = _faiss(hashes)
    if faiss_nearest is not None:
        for q in queries[:200]:
            found, expected = faiss_nearest(q), brute(q)
            assert (found and found[1]) == (expected and expected[1]), f"faiss {q:016x}"

    print(f"{SMALL:,} hashes, radius {RADIUS}, {count} queries ({hits} with a match)")
    print(f"MIH build {build:.2f} s, index arrays {mih.nbytes / 1e6:.0f} MB, single thread")
    results = {"MIH": _median_ms(mih_nearest, queries), "numpy brute": _median_ms(brute, queries)}
    if faiss_nearest is not None:
        results["faiss flat"] = _median_ms(faiss_nearest, queries)
    results["MIH cold"] = _median_ms(mih_nearest, queries, cold=True)
    results["numpy cold"] = _median_ms(brute, queries, cold=True)
    print(f"{'method':<14} {'ms/query':>9} {'MIH speed-up':>13}")
    for name, ms in results.items():
        base = results["MIH cold" if name.endswith("cold") else "MIH"]
        print(f"{name:<14} {ms:>9.4f} {ms / base:>12.1f}x")
    if faiss_nearest is None:
        print("faiss flat     (faiss-cpu not installed: pip install faiss-cpu)")

    del mih, brute, faiss_nearest, hashes
    gc.collect()
    hashes, queries = _bank_and_queries(rng, big, count)
    ids = np.arange(big)
    rss = _rss_bytes()
    start = time.perf_counter()
    mih = MultiIndexHashIndex.from_arrays(hashes, ids)
    build = time.perf_counter() - start
    grown = _rss_bytes() - rss
    hex_queries = {q: f"{q:016x}" for q in queries}
    big_ms = _median_ms(mih_nearest, queries)
    cold_ms = _median_ms(mih_nearest, queries, cold=True)
    print(
        f"\n{big:,} hashes: MIH {big_ms:.4f} ms/query ({cold_ms:.4f} cold), "
        f"build {build:.1f} s, index arrays "
        f"{mih.nbytes / 1e6:.0f} MB, RSS growth while building {grown / 1e6:.0f} MB "
        f"(input arrays {(hashes.nbytes + ids.nbytes) / 1e6:.0f} MB not included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
