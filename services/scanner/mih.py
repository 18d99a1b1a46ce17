"""Exact multi-index hashing (MIH) over 64-bit perceptual hashes (pHash/dHash).

Each hash is split into ``chunks`` disjoint bit ranges (3 chunks of 21/21/22 bits by default).
By the pigeonhole principle, a hash within Hamming distance ``r`` of the query agrees with it to
within ``r // chunks`` bits on at least one chunk, so enumerating every chunk value within that
many bit flips of the query's chunk and looking it up finds every match; the candidates are then
verified with a full XOR + popcount. Results are therefore exact for every radius; when the probe
count would cost more than a linear scan (large radius or small index) the query is answered by
brute force instead, which is exact too.

Rows are append-only. Indexed rows live in immutable *segments* (a counting-sort table per
chunk: CSR bucket offsets for large segments, sorted keys + ``searchsorted`` for small ones);
the newest rows form a small *tail* that is scanned directly. ``add`` appends to the tail and
turns it into a segment once it reaches ``TAIL_ROWS``; adjacent segments are merged when the
older one is at most twice the size of the newer one, so a row is re-indexed O(log n) times
over its life and a live bank change never rebuilds the whole index. ``remove`` clears the
row's live flag; a segment whose rows are half dead is re-indexed on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from services.scanner.hashing import BankEntry, HashMatch

HASH_BITS = 64
HEX_LEN = 16
DEFAULT_CHUNKS = 3
TAIL_ROWS = 4096  # newest rows scanned directly until there are this many
MAX_ROWS = 2**32 - 1  # row numbers are stored as uint32 in the chunk tables
_CSR_MAX_BITS = 24  # bucket-offset tables for chunks of at most this many bits...
_CSR_MAX_FILL = 8  # ...when the table is at most this many times the segment's row count
_PROBE_COST = 4  # cost of one chunk probe relative to scanning one row (brute force)
_CANDIDATE_COST = 3  # cost of verifying one candidate relative to scanning one row
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ROW_SHIFT = 32  # sort key of a match: distance << 32 | row

U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]
RowArray = npt.NDArray[np.uint32]
_EMPTY_ROWS: RowArray = np.zeros(0, dtype=np.uint32)


def parse_hash(value: str) -> int:
    """The 64-bit value of a 16-hex-digit hash; ValueError for anything else."""
    if not isinstance(value, str) or len(value) != HEX_LEN or not _HEX_DIGITS.issuperset(value):
        raise ValueError(f"expected {HEX_LEN} hex digits, got {value!r}")
    return int(value, 16)


def _flip_masks(bits: int, flips: int) -> I64Array:
    """Every ``bits``-bit value with at most ``flips`` bits set, fewest bits first."""
    out: list[int] = []
    for k in range(min(flips, bits) + 1):
        out.extend(sum(1 << i for i in combo) for combo in combinations(range(bits), k))
    return np.array(out, dtype=np.int64)


def _probe_count(bits: int, flips: int) -> int:
    return sum(math.comb(bits, k) for k in range(min(flips, bits) + 1))


def _gather_ranges(members: RowArray, starts: I64Array, ends: I64Array) -> RowArray:
    """``members[s:e]`` for every (s, e) pair, concatenated, without a Python loop."""
    lens = ends - starts
    nonempty = np.flatnonzero(lens)
    if nonempty.size == 0:
        return _EMPTY_ROWS
    starts = starts[nonempty]
    lens = lens[nonempty]
    block_ends = np.cumsum(lens)
    shift = np.repeat(starts - (block_ends - lens), lens)
    picked: RowArray = members[np.arange(int(block_ends[-1]), dtype=np.int64) + shift]
    return picked


class _Layout:
    """How a 64-bit hash is cut into chunks, and the probe sets for each flip budget."""

    def __init__(self, chunks: int) -> None:
        if not 2 <= chunks <= 16:
            raise ValueError(f"chunks must be between 2 and 16, got {chunks}")
        base, extra = divmod(HASH_BITS, chunks)
        self.chunks = chunks
        self.bits = [base + (1 if j >= chunks - extra else 0) for j in range(chunks)]
        self.shifts = [sum(self.bits[:j]) for j in range(chunks)]
        # Concatenated CSR tables: chunk j's offsets start at csr_base[j].
        self.csr_base = [sum((1 << b) + 1 for b in self.bits[:j]) for j in range(chunks)]
        self._probes: dict[int, _Probes] = {}

    def chunk_values(self, hashes: U64Array, j: int) -> I64Array:
        mask = np.uint64((1 << self.bits[j]) - 1)
        return ((hashes >> np.uint64(self.shifts[j])) & mask).astype(np.int64)

    def query_chunks(self, value: int) -> I64Array:
        return np.array(
            [(value >> s) & ((1 << b) - 1) for s, b in zip(self.shifts, self.bits, strict=True)],
            dtype=np.int64,
        )

    def probe_count(self, flips: int) -> int:
        return sum(_probe_count(b, flips) for b in self.bits)

    def probes(self, flips: int) -> _Probes:
        found = self._probes.get(flips)
        if found is None:
            found = self._probes[flips] = _Probes(self, flips)
        return found


class _Probes:
    """All (chunk, flip mask) pairs for one flip budget, laid out for vectorised lookup."""

    def __init__(self, layout: _Layout, flips: int) -> None:
        masks = [_flip_masks(b, flips) for b in layout.bits]
        self.chunk_of = np.concatenate(
            [np.full(m.size, j, dtype=np.int64) for j, m in enumerate(masks)]
        )
        self.masks = np.concatenate(masks)
        self.csr_base = np.array(layout.csr_base, dtype=np.int64)[self.chunk_of]
        self.key_base = self.chunk_of << _ROW_SHIFT

    def values(self, query_chunks: I64Array) -> I64Array:
        """The chunk value to look up for every probe of this query."""
        values: I64Array = query_chunks[self.chunk_of] ^ self.masks
        return values


class _Segment:
    """Chunk tables over a fixed set of rows: row numbers grouped by chunk value."""

    def __init__(
        self, layout: _Layout, hashes: U64Array, rows: I64Array, start: int, stop: int
    ) -> None:
        self.start = start  # the row range this segment covers (its live rows are ``rows``)
        self.stop = stop
        self.size = int(rows.size)
        self.dead = 0
        n = self.size
        values = hashes[rows]
        members = np.empty(layout.chunks * n, dtype=np.uint32)
        self.csr = max(layout.bits) <= _CSR_MAX_BITS and (1 << max(layout.bits)) <= (
            _CSR_MAX_FILL * max(n, 1)
        )
        tables: list[npt.NDArray[Any]] = []
        for j in range(layout.chunks):
            chunk = layout.chunk_values(values, j)
            order = np.argsort(chunk)
            members[j * n : (j + 1) * n] = rows[order]
            if self.csr:
                counts = np.bincount(chunk, minlength=1 << layout.bits[j])
                offsets = np.zeros(counts.size + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                tables.append(offsets + j * n)
            else:
                tables.append(chunk[order] + (j << _ROW_SHIFT))
        table = np.concatenate(tables) if tables else np.zeros(0, dtype=np.int64)
        if self.csr and layout.chunks * n < 2**32:
            table = table.astype(np.uint32)
        self.table: npt.NDArray[Any] = table
        self.members = members

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes + self.members.nbytes)

    def candidates(self, probes: _Probes, values: I64Array) -> RowArray:
        if self.size == 0:
            return _EMPTY_ROWS
        if self.csr:
            idx = values + probes.csr_base
            starts = self.table[idx].astype(np.int64)
            ends = self.table[idx + 1].astype(np.int64)
        else:
            keys = values + probes.key_base
            starts = np.searchsorted(self.table, keys, side="left").astype(np.int64)
            ends = np.searchsorted(self.table, keys, side="right").astype(np.int64)
        return _gather_ranges(self.members, starts, ends)


class MultiIndexHashIndex:
    """Exact Hamming-radius search over 64-bit hashes, with incremental add/remove.

    Same answers as brute force: ``nearest`` returns the closest live entry within the radius
    (ties: the one added first), ``within`` every live entry within it, sorted the same way.
    """

    def __init__(self, entries: Iterable[BankEntry] = (), *, chunks: int = DEFAULT_CHUNKS) -> None:
        self._layout = _Layout(chunks)
        self._n = 0  # rows ever added (live or removed)
        self._live = 0
        self._hashes: U64Array = np.zeros(0, dtype=np.uint64)
        self._alive: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._ids: npt.NDArray[Any] = np.zeros(0, dtype=np.int64)  # int64 or object (str)
        self._info: RowArray = np.zeros(0, dtype=np.uint32)  # code of (bank, reason)
        self._infos: list[tuple[str, str]] = []
        self._info_codes: dict[tuple[str, str], int] = {}
        self._rows_by_id: dict[str, list[int]] | None = None  # object ids only
        self._segments: list[_Segment] = []
        self._indexed = 0  # rows below this are in segments; the rest is the tail
        self._plans: dict[int, bool] = {}  # radius -> use MIH (reset when segments change)
        self.add(entries)

    @classmethod
    def from_arrays(
        cls,
        hashes: npt.ArrayLike,
        entry_ids: npt.ArrayLike | Sequence[str],
        *,
        bank: str = "",
        reason: str = "",
        chunks: int = DEFAULT_CHUNKS,
    ) -> MultiIndexHashIndex:
        """An index over ``hashes`` (uint64) with parallel ``entry_ids`` (ints or strings)."""
        index = cls(chunks=chunks)
        index.add_arrays(hashes, entry_ids, bank=bank, reason=reason)
        return index

    def __len__(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (hashes, flags, ids, chunk tables)."""
        n = self._n
        columns = self._hashes[:n].nbytes + self._alive[:n].nbytes + self._info[:n].nbytes
        return int(columns + self._ids[:n].nbytes + sum(s.nbytes for s in self._segments))

    # ------------------------------------------------------------------ updates

    def add(self, entries: Iterable[BankEntry]) -> None:
        """Append bank entries (incrementally: existing segments are left as they are)."""
        batch = list(entries)
        if not batch:
            return
        hashes = np.array([parse_hash(e.hash_hex) for e in batch], dtype=np.uint64)
        ids = np.empty(len(batch), dtype=object)
        ids[:] = [e.entry_id for e in batch]
        info = np.array([self._info_code(e.bank, e.reason) for e in batch], dtype=np.uint32)
        self._append(hashes, ids, info)

    def add_arrays(
        self,
        hashes: npt.ArrayLike,
        entry_ids: npt.ArrayLike | Sequence[str],
        *,
        bank: str = "",
        reason: str = "",
    ) -> None:
        """Append uint64 ``hashes`` with parallel ``entry_ids``, all in one bank/reason."""
        values = np.asarray(hashes, dtype=np.uint64).reshape(-1)
        ids = np.asarray(entry_ids)
        if ids.ndim != 1 or ids.size != values.size:
            raise ValueError(f"{values.size} hashes but entry_ids of shape {ids.shape}")
        if ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        else:
            ids = np.array([str(x) for x in ids.tolist()], dtype=object)
        info = np.full(values.size, self._info_code(bank, reason), dtype=np.uint32)
        self._append(values, ids, info)

    def remove(self, entry_ids: Iterable[str | int]) -> int:
        """Drop every live row with one of these ids; returns how many rows were dropped."""
        wanted = {str(x) for x in entry_ids}
        if not wanted or self._n == 0:
            return 0
        if self._rows_by_id is not None:
            found = [r for key in wanted for r in self._rows_by_id.pop(key, ())]
            rows = np.array(sorted(found), dtype=np.int64)
        else:
            numeric = [int(x) for x in wanted if _is_int(x)]
            targets = np.array(numeric, dtype=np.int64)
            rows = np.flatnonzero(np.isin(self._ids[: self._n], targets)).astype(np.int64)
        rows = rows[self._alive[rows]] if rows.size else rows
        if rows.size == 0:
            return 0
        self._alive[rows] = False
        self._live -= int(rows.size)
        self._retire(rows)
        return int(rows.size)

    def _info_code(self, bank: str, reason: str) -> int:
        key = (bank, reason)
        code = self._info_codes.get(key)
        if code is None:
            code = self._info_codes[key] = len(self._infos)
            self._infos.append(key)
        return code

    def _append(self, hashes: U64Array, ids: npt.NDArray[Any], info: RowArray) -> None:
        k = int(hashes.size)
        if k == 0:
            return
        start, stop = self._n, self._n + k
        if stop > MAX_ROWS:
            raise OverflowError(f"more than {MAX_ROWS} rows")
        if ids.dtype == object and self._ids.dtype != object:
            self._to_object_ids()
        elif ids.dtype != object and self._ids.dtype == object:
            ids = np.array([str(x) for x in ids.tolist()], dtype=object)
        self._reserve(stop)
        self._hashes[start:stop] = hashes
        self._alive[start:stop] = True
        self._ids[start:stop] = ids
        self._info[start:stop] = info
        if self._rows_by_id is not None:
            for offset, key in enumerate(ids.tolist()):
                self._rows_by_id.setdefault(key, []).append(start + offset)
        self._n = stop
        self._live += k
        if self._n - self._indexed >= TAIL_ROWS:
            self._flush_tail()

    def _to_object_ids(self) -> None:
        n = self._n
        ids = np.empty(self._ids.size, dtype=object)
        ids[:n] = [str(x) for x in self._ids[:n].tolist()]
        self._ids = ids
        self._rows_by_id = {}
        for row, key in enumerate(ids[:n].tolist()):
            self._rows_by_id.setdefault(key, []).append(row)

    def _reserve(self, needed: int) -> None:
        capacity = self._hashes.size
        if needed <= capacity:
            return
        grown = needed if capacity == 0 else max(needed, capacity + capacity // 2)

        def grow(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
            out = np.zeros(grown, dtype=arr.dtype)
            out[: self._n] = arr[: self._n]
            return out

        self._hashes = grow(self._hashes)
        self._alive = grow(self._alive)
        self._ids = grow(self._ids)
        self._info = grow(self._info)

    def _build(self, start: int, stop: int) -> _Segment:
        rows = start + np.flatnonzero(self._alive[start:stop]).astype(np.int64)
        return _Segment(self._layout, self._hashes, rows, start, stop)

    def _flush_tail(self) -> None:
        segment = self._build(self._indexed, self._n)
        self._segments.append(segment)
        self._indexed = self._n
        self._plans.clear()
        segs = self._segments
        while len(segs) >= 2 and segs[-2].size <= 2 * segs[-1].size:
            newer = segs.pop()
            older = segs.pop()
            merged = self._build(older.start, newer.stop)
            segs.append(merged)

    def _retire(self, rows: I64Array) -> None:
        """Count removed rows against their segments; re-index half-dead segments alone."""
        starts = np.array([s.start for s in self._segments], dtype=np.int64)
        indexed = rows[rows < self._indexed]
        if indexed.size == 0:
            return
        which = np.searchsorted(starts, indexed, side="right") - 1
        for i, dead in zip(*np.unique(which, return_counts=True), strict=True):
            seg = self._segments[int(i)]
            seg.dead += int(dead)
            if 2 * seg.dead >= seg.size:
                fresh = self._build(seg.start, seg.stop)
                self._segments[int(i)] = fresh
                self._plans.clear()

    # ------------------------------------------------------------------ queries

    def strategy(self, max_distance: int) -> str:
        """``"mih"`` or ``"brute"``: how a query at this radius would be answered."""
        use_mih = self._plans.get(max_distance)
        if use_mih is None:
            use_mih = self._plans[max_distance] = self._mih_pays(max_distance)
        return "mih" if use_mih else "brute"

    def _mih_pays(self, max_distance: int) -> bool:
        if max_distance < 0 or max_distance >= HASH_BITS or self._indexed == 0:
            return False
        flips = max_distance // self._layout.chunks
        probes = self._layout.probe_count(flips)
        expected = sum(_probe_count(b, flips) * self._indexed / (1 << b) for b in self._layout.bits)
        cost = _PROBE_COST * probes * len(self._segments) + _CANDIDATE_COST * expected
        return cost < self._indexed

    def nearest(self, hash_hex: str, max_distance: int) -> HashMatch | None:
        """Closest live entry within ``max_distance`` bits (earliest added on ties), else None."""
        keys = self._match_keys(hash_hex, max_distance)
        if keys.size == 0:
            return None
        return self._match(int(keys.min()))

    def within(self, hash_hex: str, max_distance: int) -> list[HashMatch]:
        """Every live entry within ``max_distance`` bits, closest first, then earliest added."""
        keys = np.unique(self._match_keys(hash_hex, max_distance))
        return [self._match(int(k)) for k in keys.tolist()]

    def _match_keys(self, hash_hex: str, max_distance: int) -> I64Array:
        """``distance << 32 | row`` of every live row within the radius (may repeat)."""
        value = parse_hash(hash_hex)
        if max_distance < 0 or self._live == 0:
            return np.zeros(0, dtype=np.int64)
        query = np.uint64(value)
        if self.strategy(max_distance) == "brute":
            n = self._n
            distances = np.bitwise_count(self._hashes[:n] ^ query)
            hits = np.flatnonzero((distances <= max_distance) & self._alive[:n])
            brute: I64Array = (distances[hits].astype(np.int64) << _ROW_SHIFT) | hits
            return brute
        flips = max_distance // self._layout.chunks
        probes = self._layout.probes(flips)
        values = probes.values(self._layout.query_chunks(value))
        parts = [seg.candidates(probes, values) for seg in self._segments]
        parts.append(np.arange(self._indexed, self._n, dtype=np.uint32))
        rows = np.concatenate(parts).astype(np.int64)
        dist = np.bitwise_count(self._hashes[rows] ^ query).astype(np.int64)
        keep = (dist <= max_distance) & self._alive[rows]
        keys: I64Array = (dist[keep] << _ROW_SHIFT) | rows[keep]
        return keys

    def _match(self, key: int) -> HashMatch:
        row = key & ((1 << _ROW_SHIFT) - 1)
        bank, reason = self._infos[int(self._info[row])]
        return HashMatch(
            entry_id=str(self._ids[row]),
            bank=bank,
            hash_hex=f"{int(self._hashes[row]):016x}",
            reason=reason,
            distance=key >> _ROW_SHIFT,
        )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
