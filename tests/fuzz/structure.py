"""Where each accepted container keeps its length fields and its dimensions: the fuzzers' map.

``units`` lists the structural pieces of a file (JPEG segments, PNG chunks, RIFF chunks, GIF
blocks and sub-blocks, TIFF IFD entries, ISO-BMFF boxes) with the field that gives each one's
length, so mutations can duplicate, drop or lie about them. ``dimension_fields`` lists the
(width, height) fields a format declares in its headers. Only lengths are followed; nothing is
decoded. Every walker stops at the first inconsistency: hostile input is what it is fed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from services.ingest.intake import sniff_format


@dataclass(frozen=True)
class Field:
    """An unsigned integer of ``size`` bytes at ``offset`` (``bits``: only the low bits count)."""

    offset: int
    size: int
    big_endian: bool
    bits: int = 0  # 0: all 8 * size bits
    minus_one: bool = False  # the field stores value - 1 (WebP canvas and frame sizes)
    shift: int = 0  # the field's lowest bit within the integer (VP8L packs two sizes in one)

    @property
    def maximum(self) -> int:
        return (1 << (self.bits or 8 * self.size)) - 1 + (1 if self.minus_one else 0)

    def read(self, data: bytes | bytearray) -> int:
        raw = int.from_bytes(
            data[self.offset : self.offset + self.size], "big" if self.big_endian else "little"
        )
        value = (raw >> self.shift) & ((1 << self.bits) - 1) if self.bits else raw
        return value + 1 if self.minus_one else value

    def write(self, data: bytearray, value: int) -> None:
        """Store ``value`` clamped to what the field can hold, keeping any bits it does not own."""
        value = max(1 if self.minus_one else 0, min(value, self.maximum))
        stored = value - 1 if self.minus_one else value
        order: Literal["big", "little"] = "big" if self.big_endian else "little"
        if self.offset + self.size > len(data):
            return
        if self.bits:
            old = int.from_bytes(data[self.offset : self.offset + self.size], order)
            mask = ((1 << self.bits) - 1) << self.shift
            stored = (old & ~mask) | ((stored << self.shift) & mask)
        data[self.offset : self.offset + self.size] = stored.to_bytes(self.size, order)


@dataclass(frozen=True)
class Unit:
    """One structural piece: bytes ``start:end`` and the field that says how long it is."""

    start: int
    end: int
    length: Field | None = None


def file_format(data: bytes) -> str | None:
    return sniff_format(data[:128])


def units(data: bytes) -> list[Unit]:
    walker = _WALKERS.get(file_format(data) or "")
    found = walker(data) if walker else []
    return [u for u in found if 0 <= u.start < u.end <= len(data)]


def dimension_fields(data: bytes) -> list[tuple[Field, Field]]:
    finder = _DIMENSIONS.get(file_format(data) or "")
    pairs = finder(data) if finder else []
    return [(w, h) for w, h in pairs if max(w.offset + w.size, h.offset + h.size) <= len(data)]


def patch_dimensions(data: bytes, width: int, height: int, *, every: bool = False) -> bytes | None:
    """The file with its (first, or ``every``) declared size replaced; None if it declares none.
    PNG's IHDR CRC is recomputed so the lie gets past the CRC check (see ``fix_png_crcs``)."""
    pairs = dimension_fields(data)
    if not pairs:
        return None
    out = bytearray(data)
    for w, h in pairs if every else pairs[:1]:
        w.write(out, width)
        h.write(out, height)
    return fix_png_crcs(bytes(out)) if file_format(data) == "png" else bytes(out)


def fix_png_crcs(data: bytes) -> bytes:
    """Every chunk CRC recomputed (a mutated PNG otherwise dies at Pillow's CRC check)."""
    out = bytearray(data)
    for unit in _png_units(data):
        body_end = unit.end - 4
        crc = zlib.crc32(bytes(out[unit.start + 4 : body_end]))
        out[body_end : unit.end] = struct.pack(">I", crc)
    return bytes(out)


# --- JPEG ---------------------------------------------------------------------------------------

_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset({0x01, 0xD8, 0xD9, *range(0xD0, 0xD8)})


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of each segment with a length, scans included, until EOI."""
    found: list[tuple[int, int]] = []
    pos = 2
    while pos + 4 <= len(data) and len(found) < 10_000:
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        if marker == 0xFF or marker in _JPEG_NO_LENGTH or marker == 0x00:
            pos += 1 if marker == 0xFF else 2
            continue
        found.append((pos, marker))
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # entropy-coded data: up to the next real marker
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= len(data):
                    return found
                nxt = data[pos + 1]
                if nxt != 0x00 and not 0xD0 <= nxt <= 0xD7 and nxt != 0xFF:
                    break
                pos += 2 if nxt != 0xFF else 1
    return found


def _jpeg_units(data: bytes) -> list[Unit]:
    return [
        Unit(pos, pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big"), Field(pos + 2, 2, True))
        for pos, _ in _jpeg_segments(data)
    ]


def _jpeg_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    return [
        (Field(pos + 7, 2, True), Field(pos + 5, 2, True))
        for pos, marker in _jpeg_segments(data)
        if marker in _SOF
    ]


def jpeg_end(data: bytes) -> int:
    """Offset just past the first image's EOI (or the end of the file)."""
    segments = _jpeg_segments(data)
    pos = segments[-1][0] + 2 if segments else 2
    eoi = data.find(b"\xff\xd9", pos)
    return len(data) if eoi < 0 else eoi + 2


# --- PNG ----------------------------------------------------------------------------------------


def _png_units(data: bytes) -> list[Unit]:
    found: list[Unit] = []
    pos = 8
    while pos + 12 <= len(data) and len(found) < 100_000:
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        found.append(Unit(pos, end, Field(pos, 4, True)))
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos = end
    return found


def _png_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    return [(Field(16, 4, True), Field(20, 4, True))] if data[12:16] == b"IHDR" else []


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


# --- WebP (RIFF) --------------------------------------------------------------------------------


def _riff_chunks(data: bytes, start: int, end: int) -> list[tuple[int, bytes, int]]:
    """(offset, fourcc, length) of the chunks between ``start`` and ``end``."""
    found: list[tuple[int, bytes, int]] = []
    pos = start
    while pos + 8 <= end and len(found) < 100_000:
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        found.append((pos, data[pos : pos + 4], length))
        pos += 8 + length + (length & 1)
    return found


def _webp_units(data: bytes) -> list[Unit]:
    found = [Unit(0, len(data), Field(4, 4, False))]
    for pos, kind, length in _riff_chunks(data, 12, len(data)):
        end = min(pos + 8 + length, len(data))
        found.append(Unit(pos, end, Field(pos + 4, 4, False)))
        if kind == b"ANMF":
            found += [
                Unit(p, min(p + 8 + n, end), Field(p + 4, 4, False))
                for p, _, n in _riff_chunks(data, pos + 24, end)
            ]
    return found


def _webp_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    pairs = []
    for pos, kind, _ in _riff_chunks(data, 12, len(data)):
        body = pos + 8
        if kind == b"VP8X":
            pairs.append((_u24_minus_one(body + 4), _u24_minus_one(body + 7)))
        elif kind == b"ANMF":
            pairs.append((_u24_minus_one(body + 6), _u24_minus_one(body + 9)))
        elif kind == b"VP8 " and data[body + 3 : body + 6] == b"\x9d\x01\x2a":
            pairs.append((Field(body + 6, 2, False, 14), Field(body + 8, 2, False, 14)))
        elif kind == b"VP8L" and data[body : body + 1] == b"\x2f":
            # width - 1 in bits 0-13 and height - 1 in bits 14-27 of one little-endian word
            word = body + 1
            pairs.append((Field(word, 4, False, 14, True), Field(word, 4, False, 14, True, 14)))
    return pairs


def _u24_minus_one(offset: int) -> Field:
    return Field(offset, 3, False, minus_one=True)


# --- GIF ----------------------------------------------------------------------------------------


def _gif_walk(data: bytes) -> tuple[list[Unit], list[tuple[Field, Field]]]:
    found: list[Unit] = []
    dims = [(Field(6, 2, False), Field(8, 2, False))]
    if len(data) < 13:
        return found, dims
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data) and data[pos] != 0x3B and len(found) < 100_000:
        kind = data[pos]
        if kind == 0x2C and pos + 10 <= len(data):
            dims.append((Field(pos + 5, 2, False), Field(pos + 7, 2, False)))
            local = data[pos + 9]
            first = pos + 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        elif kind == 0x21 and pos + 2 < len(data):
            first = pos + 2
        else:
            break
        start, pos = pos, first
        while pos < len(data) and data[pos]:
            found.append(Unit(pos, min(pos + 1 + data[pos], len(data)), Field(pos, 1, False)))
            pos += 1 + data[pos]
        pos += 1
        found.append(Unit(start, min(pos, len(data))))
    return found, dims


def _gif_units(data: bytes) -> list[Unit]:
    return _gif_walk(data)[0]


def _gif_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    return _gif_walk(data)[1]


# --- BMP ----------------------------------------------------------------------------------------


def _bmp_units(data: bytes) -> list[Unit]:
    header = int.from_bytes(data[14:18], "little")
    return [
        Unit(0, len(data), Field(2, 4, False)),  # bfSize
        Unit(10, 14, Field(10, 4, False)),  # offset of the pixel data
        Unit(14, 14 + header, Field(14, 4, False)),  # the info header's own size
    ]


def _bmp_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 core header: 16-bit sizes
        return [(Field(18, 2, False), Field(20, 2, False))]
    return [(Field(18, 4, False), Field(22, 4, False))]


# --- TIFF ---------------------------------------------------------------------------------------


def _tiff_entries(data: bytes) -> list[tuple[int, int, int, bool]]:
    """(entry offset, tag, type, big endian) of every entry of IFD0."""
    big = data[:2] == b"MM"
    order = ">" if big else "<"
    if data[2:4] not in (b"*\x00", b"\x00*") or len(data) < 8:
        return []
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    if ifd + 2 > len(data):
        return []
    count = struct.unpack_from(order + "H", data, ifd)[0]
    entries = []
    for index in range(min(count, 4096)):
        pos = ifd + 2 + 12 * index
        if pos + 12 > len(data):
            break
        tag, kind = struct.unpack_from(order + "HH", data, pos)
        entries.append((pos, tag, kind, big))
    return entries


def _tiff_units(data: bytes) -> list[Unit]:
    return [Unit(pos, pos + 12, Field(pos + 4, 4, big)) for pos, _, _, big in _tiff_entries(data)]


def _tiff_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    fields: dict[int, Field] = {}
    for pos, tag, kind, big in _tiff_entries(data):
        if tag in (256, 257) and kind in (3, 4):  # ImageWidth, ImageLength: SHORT or LONG
            fields[tag] = Field(pos + 8, 2 if kind == 3 else 4, big)
    return [(fields[256], fields[257])] if len(fields) == 2 else []


# --- HEIF / AVIF (ISO-BMFF) ---------------------------------------------------------------------

_CONTAINER_BOXES = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"dinf": 0, b"moov": 0, b"trak": 0}


def _bmff_units(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[Unit]:
    end = len(data) if end is None else end
    found: list[Unit] = []
    pos = start
    while pos + 8 <= end and len(found) < 10_000:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if size < 8:
            break
        box_end = min(pos + size, end)
        found.append(Unit(pos, box_end, Field(pos, 4, True)))
        if kind in _CONTAINER_BOXES and depth < 6:
            found += _bmff_units(data, pos + 8 + _CONTAINER_BOXES[kind], box_end, depth + 1)
        pos += size
    return found


def _bmff_dimensions(data: bytes) -> list[tuple[Field, Field]]:
    pairs, pos = [], 0
    while (pos := data.find(b"ispe", pos + 1)) > 0:
        pairs.append((Field(pos + 8, 4, True), Field(pos + 12, 4, True)))
    return pairs


_WALKERS = {
    "jpeg": _jpeg_units,
    "png": _png_units,
    "webp": _webp_units,
    "gif": _gif_units,
    "bmp": _bmp_units,
    "tiff": _tiff_units,
    "heif": _bmff_units,
    "avif": _bmff_units,
}
_DIMENSIONS = {
    "jpeg": _jpeg_dimensions,
    "png": _png_dimensions,
    "webp": _webp_dimensions,
    "gif": _gif_dimensions,
    "bmp": _bmp_dimensions,
    "tiff": _tiff_dimensions,
    "heif": _bmff_dimensions,
    "avif": _bmff_dimensions,
}
