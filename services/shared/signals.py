"""Hash signal types a bank can hold, shared by the scanner (which computes and matches them)
and review (which validates bank entries and thresholds): one registry, defined once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

_HEX_DIGITS = re.compile(r"^[0-9a-fA-F]+$")
PDQ_MIN_QUALITY = 50  # below this a PDQ hash is too unreliable to act on (ThreatExchange default)


@dataclass(frozen=True)
class SignalType:
    """A hash family a bank can hold: its width and default match threshold (bits, inclusive)."""

    name: str
    bits: int
    default_threshold: int
    max_threshold: int  # the most a bank may loosen it to: a quarter of the bits

    @property
    def hex_len(self) -> int:
        return self.bits // 4


SIGNAL_TYPES: Mapping[str, SignalType] = MappingProxyType(
    {
        "phash": SignalType("phash", 64, 8, 16),
        "dhash": SignalType("dhash", 64, 8, 16),
        "pdq": SignalType("pdq", 256, 31, 64),
    }
)
DEFAULT_THRESHOLDS: Mapping[str, int] = MappingProxyType(
    {name: st.default_threshold for name, st in SIGNAL_TYPES.items()}
)


def parse_hex(value: str) -> int:
    if not _HEX_DIGITS.match(value):
        raise ValueError(f"not a hex hash: {value!r}")
    return int(value, 16)


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex hashes of the same length (any length)."""
    if len(a_hex) != len(b_hex):
        raise ValueError(f"hash lengths differ: {len(a_hex)} and {len(b_hex)} hex chars")
    return (parse_hex(a_hex) ^ parse_hex(b_hex)).bit_count()


def normalize_hash(signal_type: str, value: str) -> str:
    """``value`` as lowercase hex of the right length for ``signal_type``; ValueError if not."""
    st = SIGNAL_TYPES.get(signal_type)
    if st is None:
        raise ValueError(f"unknown signal type {signal_type!r}; use one of {sorted(SIGNAL_TYPES)}")
    out = value.strip().lower()
    if len(out) != st.hex_len or not _HEX_DIGITS.match(out):
        raise ValueError(f"a {signal_type} hash is {st.hex_len} hex chars, got {value!r}")
    return out
