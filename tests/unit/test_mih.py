"""Multi-index hashing: exact agreement with brute force, incremental add/remove, edge cases."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from services.scanner.hashing import BankEntry, HashIndex
from services.scanner.mih import TAIL_ROWS, MultiIndexHashIndex

U64 = npt.NDArray[np.uint64]


def _hex(value: int | np.uint64) -> str:
    return f"{int(value):016x}"


def _flip(value: int, bits: int, rng: np.random.Generator) -> int:
    for bit in rng.choice(64, size=bits, replace=False).tolist():
        value ^= 1 << bit
    return value


def _bank(rng: np.random.Generator, n: int, radius: int) -> tuple[U64, list[int]]:
    """``n`` random hashes plus, per query, planted neighbours at distances 0..radius+1."""
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False).tolist()
    queries = []
    for _ in range(60):
        query = int(rng.integers(0, 2**64, dtype=np.uint64))
        queries.append(query)
        hashes.extend(_flip(query, d, rng) for d in range(radius + 2))
    order = rng.permutation(len(hashes))
    return np.array(hashes, dtype=np.uint64)[order], queries


def _brute(
    hashes: U64, ids: list[str], alive: npt.NDArray[np.bool_], query: int, radius: int
) -> list[tuple[str, int]]:
    distances = np.bitwise_count(hashes ^ np.uint64(query)).astype(np.int64)
    rows = np.flatnonzero((distances <= radius) & alive)
    rows = rows[np.lexsort((rows, distances[rows]))]
    return [(ids[r], int(distances[r])) for r in rows.tolist()]


def _found(index: MultiIndexHashIndex, query: int, radius: int) -> list[tuple[str, int]]:
    return [(m.entry_id, m.distance) for m in index.within(_hex(query), radius)]


@pytest.mark.parametrize(
    ("chunks", "radii"),
    [(3, (0, 2, 3, 5, 6, 8)), (4, (0, 3, 4, 7, 8, 11))],
)
def test_exact_recall_matches_brute_force(chunks: int, radii: tuple[int, ...]) -> None:
    rng = np.random.default_rng(chunks)
    hashes, queries = _bank(rng, 20_000, max(radii))
    ids = [f"e{i}" for i in range(hashes.size)]
    alive = np.ones(hashes.size, dtype=bool)
    index = MultiIndexHashIndex.from_arrays(hashes, ids, bank="b", reason="r", chunks=chunks)
    assert len(index) == hashes.size
    assert index._segments[0].csr == (chunks == 4)  # both table kinds are covered
    # Probes for random queries too (mostly empty answers) and the planted ones.
    queries += rng.integers(0, 2**64, 40, dtype=np.uint64).tolist()
    for radius in radii:
        assert index.strategy(radius) == "mih", radius
        planted = 0
        for query in queries:
            expected = _brute(hashes, ids, alive, query, radius)
            assert _found(index, query, radius) == expected, (radius, _hex(query))
            best = index.nearest(_hex(query), radius)
            assert (None if best is None else (best.entry_id, best.distance)) == (
                expected[0] if expected else None
            )
            planted += len(expected)
        assert planted >= 60 * (radius + 1)  # every planted neighbour inside the radius


def test_large_radius_falls_back_to_brute_force_and_stays_exact() -> None:
    rng = np.random.default_rng(7)
    hashes, queries = _bank(rng, 5_000, 20)
    ids = [str(i) for i in range(hashes.size)]
    alive = np.ones(hashes.size, dtype=bool)
    index = MultiIndexHashIndex.from_arrays(hashes, np.arange(hashes.size))
    for radius in (20, 40, 64):
        assert index.strategy(radius) == "brute"
        for query in queries[:10]:
            assert _found(index, query, radius) == _brute(hashes, ids, alive, query, radius)


def test_incremental_add_and_remove_match_brute_force() -> None:
    rng = np.random.default_rng(11)
    radius = 8
    hashes, queries = _bank(rng, 30_000, radius)
    ids = [f"id-{i}" for i in range(hashes.size)]
    entries = [BankEntry(ids[i], "bank", _hex(h), "why") for i, h in enumerate(hashes.tolist())]

    first = 20_000
    index = MultiIndexHashIndex(entries[:first])
    base = index._segments[0]
    alive = np.zeros(hashes.size, dtype=bool)
    alive[:first] = True

    def check() -> None:
        assert len(index) == int(alive.sum())
        for query in queries:
            expected = _brute(hashes, ids, alive, query, radius)
            assert _found(index, query, radius) == expected

    # Small live changes go to the tail / small segments: the base segment is untouched
    # (it is merged only once the rows added after it reach half its size).
    pos = first
    for size in (1, 17, 500, TAIL_ROWS, 3000, 300):
        index.add(entries[pos : pos + size])
        alive[pos : pos + size] = True
        pos += size
        assert index._segments[0] is base
        check()
    gone = rng.choice(pos, size=600, replace=False)
    assert index.remove(ids[r] for r in gone.tolist()) == 600
    alive[gone] = False
    check()
    assert index.remove([ids[int(gone[0])], "no-such-id"]) == 0
    assert index._segments[0] is base
    # Removing most of the base re-indexes that segment alone; still exact afterwards.
    most = np.flatnonzero(alive[:first])[: first * 3 // 4]
    index.remove(ids[r] for r in most.tolist())
    alive[most] = False
    check()
    # The rest, then add back: an id can be re-added after removal.
    index.add(entries[pos:])
    alive[pos:] = True
    check()
    index.remove(ids)
    assert len(index) == 0
    assert index.within(_hex(queries[0]), 64) == []
    index.add(entries[:3])
    assert len(index) == 3


def test_ties_go_to_the_earliest_added_and_entry_fields_are_kept() -> None:
    h = "8f373714acfcf4d0"
    near = f"{int(h, 16) ^ 0b11:016x}"
    entries = [
        BankEntry("far", "csam", f"{int(h, 16) ^ 0xFF:016x}", "x"),
        BankEntry("first", "csam", near, "known"),
        BankEntry("second", "terror", near, "other"),
    ]
    index = MultiIndexHashIndex(entries)
    best = index.nearest(h, 8)
    assert best is not None
    assert (best.entry_id, best.bank, best.hash_hex, best.reason, best.distance) == (
        "first",
        "csam",
        near,
        "known",
        2,
    )
    assert [m.entry_id for m in index.within(h, 8)] == ["first", "second", "far"]
    assert index.nearest(h, 1) is None
    assert index.nearest(h, 8) == HashIndex(entries).nearest(h, 8)


def test_integer_ids_and_mixed_adds() -> None:
    index = MultiIndexHashIndex.from_arrays(
        np.array([1, 2, 3], dtype=np.uint64), np.array([10, 20, 30]), bank="b", reason="r"
    )
    index.add([BankEntry("x", "other", _hex(3), "dup")])
    assert [(m.entry_id, m.bank) for m in index.within(_hex(3), 0)] == [("30", "b"), ("x", "other")]
    assert index.remove(["30"]) == 1
    assert [m.entry_id for m in index.within(_hex(3), 0)] == ["x"]


def test_empty_index() -> None:
    index = MultiIndexHashIndex()
    assert len(index) == 0
    assert index.nearest("0" * 16, 64) is None
    assert index.within("f" * 16, 10) == []
    assert index.remove(["anything"]) == 0
    index.add([])
    assert len(index) == 0


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "0" * 15, "0" * 17, "g" * 16, " 123456789abcdef", "0x23456789abcdef", "+" * 16],
)
def test_invalid_hex_is_rejected(bad: str) -> None:
    empty = MultiIndexHashIndex()
    full = MultiIndexHashIndex.from_arrays(np.arange(10, dtype=np.uint64), np.arange(10))
    for index in (empty, full):
        with pytest.raises(ValueError):
            index.nearest(bad, 4)
        with pytest.raises(ValueError):
            index.within(bad, 4)
    with pytest.raises(ValueError):
        MultiIndexHashIndex([BankEntry("a", "b", bad, "c")])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MultiIndexHashIndex(chunks=1)
    with pytest.raises(ValueError):
        MultiIndexHashIndex.from_arrays(np.arange(3, dtype=np.uint64), np.arange(2))
    index = MultiIndexHashIndex.from_arrays(np.arange(3, dtype=np.uint64), np.arange(3))
    assert index.nearest(_hex(0), -1) is None
