"""Perceptual hashes of normalised images and an exact brute-force index of banned hashes.

Three signal types, all computed from the same normalised (upright, alpha-flattened, reduced)
image: imagehash pHash and dHash (64 bits) and Meta's PDQ (256 bits plus a 0..100 quality
score; ``pdqhash`` on PyPI, hex in the ThreatExchange bit order, so banks can be exchanged with
industry lists). ``SIGNAL_TYPES`` holds the length and default match threshold of each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

from services.shared.signals import (  # re-exported: the scanner's hashing vocabulary
    DEFAULT_THRESHOLDS as DEFAULT_THRESHOLDS,
)
from services.shared.signals import PDQ_MIN_QUALITY as PDQ_MIN_QUALITY
from services.shared.signals import SIGNAL_TYPES as SIGNAL_TYPES
from services.shared.signals import SignalType as SignalType
from services.shared.signals import hamming as hamming
from services.shared.signals import normalize_hash as normalize_hash
from services.shared.signals import parse_hex

HASH_HEX_LEN = 16  # 64-bit hashes
MIN_SIDE = 32
MIN_GRAY_STD = 3.0  # on the 0..255 scale
_FLATNESS_PROBE = 128
_HEX_DIGITS = re.compile(r"^[0-9a-fA-F]+$")

PDQ_HEX_LEN = 64  # 256-bit hashes
PDQ_MAX_SIDE = 1024  # larger inputs (undrafted PNG/WebP) are box-reduced first; see pdq_hex


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


def pdq_hex(img: Image.Image) -> tuple[str, int]:
    """PDQ hash (64 lowercase hex chars, ThreatExchange bit order) and its quality (0..100).

    Meant for the normalised image ``load_normalized`` gives (JPEGs already DCT-reduced). PDQ
    works on a 64x64 luminance reduction internally, so anything larger than ``PDQ_MAX_SIDE``
    is box-reduced by an integer factor first: that costs a few bits at most and keeps an
    undrafted 12-MP PNG from taking half a second. Quality < ``PDQ_MIN_QUALITY`` means the hash
    must not be acted on (flat or featureless images).
    """
    import pdqhash  # type: ignore[import-untyped]  # deferred: no work at import time

    rgb = img if img.mode == "RGB" else img.convert("RGB")
    longest = max(rgb.size)
    if longest > PDQ_MAX_SIDE:
        rgb = rgb.reduce(-(-longest // PDQ_MAX_SIDE))
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    vector, quality = pdqhash.compute(pixels)
    bits = np.asarray(vector, dtype=np.uint8)
    return np.packbits(bits).tobytes().hex(), int(quality)


@dataclass(frozen=True)
class ImageSignals:
    """Every bank signal of one normalised image. ``hashable`` false (tiny or flat) or a PDQ
    quality under the bank's minimum means a match may ask for review but never auto-block."""

    phash: str
    dhash: str
    pdq: str
    pdq_quality: int
    hashable: bool

    def get(self, signal_type: str) -> str:
        if signal_type not in SIGNAL_TYPES:
            raise ValueError(f"unknown signal type {signal_type!r}")
        value: str = getattr(self, signal_type)
        return value


def image_signals(img: Image.Image) -> ImageSignals:
    """pHash, dHash and PDQ (with quality) of one normalised image, plus ``is_hashable``."""
    digest, quality = pdq_hex(img)
    return ImageSignals(phash_hex(img), dhash_hex(img), digest, quality, is_hashable(img))


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


class WideHashIndex:
    """Exact nearest-neighbour search over hashes of any multiple of 64 bits (PDQ: 256), by
    brute-force popcount over uint64 words. ~1M PDQ hashes is a few ms per query."""

    def __init__(self, entries: Iterable[BankEntry], bits: int = 256) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError(f"bits must be a positive multiple of 64, got {bits}")
        self.bits = bits
        self._entries: tuple[BankEntry, ...] = tuple(entries)
        self._hashes: npt.NDArray[np.uint64] = np.array(
            [self._words(e.hash_hex) for e in self._entries], dtype=np.uint64
        ).reshape(len(self._entries), bits // 64)

    def _words(self, hash_hex: str) -> list[int]:
        if len(hash_hex) != self.bits // 4:
            raise ValueError(f"expected {self.bits // 4} hex chars, got {len(hash_hex)}")
        parse_hex(hash_hex)
        return [int(hash_hex[i : i + 16], 16) for i in range(0, len(hash_hex), 16)]

    def __len__(self) -> int:
        return len(self._entries)

    def nearest(self, hash_hex: str, max_distance: int) -> HashMatch | None:
        """Closest entry within ``max_distance`` bits (first one on ties), else None."""
        query = np.array(self._words(hash_hex), dtype=np.uint64)
        if not self._entries:
            return None
        distances = np.bitwise_count(np.bitwise_xor(self._hashes, query)).sum(axis=1)
        best = int(np.argmin(distances))
        distance = int(distances[best])
        if distance > max_distance:
            return None
        e = self._entries[best]
        return HashMatch(e.entry_id, e.bank, e.hash_hex, e.reason, distance)
