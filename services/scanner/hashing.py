"""Perceptual hashes of normalised images and an exact brute-force index of banned hashes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

HASH_HEX_LEN = 16  # 64-bit hashes
MIN_SIDE = 32
MIN_GRAY_STD = 3.0  # on the 0..255 scale
_FLATNESS_PROBE = 128


def _check_hex(value: str) -> int:
    if len(value) != HASH_HEX_LEN:
        raise ValueError(f"expected {HASH_HEX_LEN} hex chars, got {len(value)}: {value!r}")
    try:
        return int(value, 16)
    except ValueError as exc:
        raise ValueError(f"not a hex hash: {value!r}") from exc


def phash_hex(img: Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 lowercase hex chars."""
    return str(imagehash.phash(img, hash_size=8))


def dhash_hex(img: Image.Image) -> str:
    """64-bit difference hash as 16 lowercase hex chars."""
    return str(imagehash.dhash(img, hash_size=8))


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two 64-bit hex hashes."""
    return (_check_hex(a_hex) ^ _check_hex(b_hex)).bit_count()


def is_hashable(img: Image.Image) -> bool:
    """False for tiny or nearly flat images, whose hashes are degenerate and collide easily."""
    width, height = img.size
    if width < MIN_SIDE or height < MIN_SIDE:
        return False
    gray = img.convert("L")
    gray.thumbnail((_FLATNESS_PROBE, _FLATNESS_PROBE))
    return float(np.asarray(gray, dtype=np.float32).std()) >= MIN_GRAY_STD


@dataclass(frozen=True)
class BankEntry:
    entry_id: str
    bank: str
    hash_hex: str
    reason: str


@dataclass(frozen=True)
class HashMatch:
    entry_id: str
    bank: str
    hash_hex: str
    reason: str
    distance: int


class HashIndex:
    """Exact nearest-neighbour search over 64-bit hashes (brute-force popcount of XOR)."""

    def __init__(self, entries: Iterable[BankEntry]) -> None:
        self._entries: tuple[BankEntry, ...] = tuple(entries)
        values = [_check_hex(e.hash_hex) for e in self._entries]
        self._hashes: npt.NDArray[np.uint64] = np.array(values, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._entries)

    def nearest(self, hash_hex: str, max_distance: int) -> HashMatch | None:
        """Closest entry within ``max_distance`` bits (first one on ties), else None."""
        if not self._entries:
            return None
        query = np.uint64(_check_hex(hash_hex))
        distances = np.bitwise_count(np.bitwise_xor(self._hashes, query))
        best = int(np.argmin(distances))
        distance = int(distances[best])
        if distance > max_distance:
            return None
        e = self._entries[best]
        return HashMatch(e.entry_id, e.bank, e.hash_hex, e.reason, distance)
