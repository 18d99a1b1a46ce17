"""Container headers read from the raw bytes, before Pillow or a codec sees any pixel data.

Canvas and frame sizes are checked against the limits as they are read, and frames are counted
one at a time: the walk stops (and refuses the upload) as soon as a limit is passed, so a GIF with
a million frames costs no more than one with ``max_frames + 1``. Nothing here decompresses data;
it only follows block and chunk lengths.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from services.ingest.intake_limits import (
    IntakeLimits,
    check_dimensions,
    check_frames,
    corrupt_image,
)
from services.shared.errors import IntakeError

_GIF_EXTENSION = 0x21
_GIF_IMAGE = 0x2C
_GIF_TRAILER = 0x3B
_GIF_GRAPHIC_CONTROL = 0xF9
_GIF_APPLICATION = 0xFF
_GIF_PLAIN_TEXT = 0x01
_GIF_LOOP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")
_WEBP_OTHER_CHUNKS = 64  # VP8X, ICCP, ANIM, EXIF, XMP and the like: a handful in real files
# Encoders write 1 scan (baseline) to ~25 (libjpeg's progressive scripts: 10 for colour, 6 per
# component otherwise); each scan costs a pass over the whole image (see read_jpeg_scans).
MAX_JPEG_SCANS = 100
# Segments before and between scans: APPn, DQT, DHT, SOF, COM... Real files have tens (an ICC
# profile split in 255 APP2 segments and an extended XMP packet are the biggest cases).
MAX_JPEG_SEGMENTS = 2048
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # TEM, SOI, RST0-7: no length
_JPEG_EOI, _JPEG_SOS = 0xD9, 0xDA
# In entropy-coded data a 0xFF byte is followed by 00 (stuffing), RSTn or another FF (fill):
# anything else is the next marker, which ends the scan.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class GifFrame:
    left: int
    top: int
    width: int
    height: int
    start: int  # offset of the image descriptor (0x2C) in the file
    end: int  # offset just past the frame's image data
    control: bytes  # the 4-byte Graphic Control Extension payload, or b"" when there is none
    flags: int  # the image descriptor's packed field (local colour table, interlace)

    @property
    def disposal(self) -> int:
        return (self.control[0] >> 2) & 7 if self.control else 0

    @property
    def delay_ms(self) -> int:
        return 10 * int.from_bytes(self.control[1:3], "little") if self.control else 0


@dataclass(frozen=True)
class GifLayout:
    screen: bytes  # header, logical screen descriptor and global colour table
    canvas: tuple[int, int]  # logical screen, grown to hold every frame
    frames: tuple[GifFrame, ...]
    loop: int | None  # NETSCAPE2.0 repeat count (0 = forever); None when the file has none


def read_gif(data: bytes, limits: IntakeLimits) -> GifLayout:
    """Walk a GIF's blocks: every frame's place in the file, its size and its control block."""
    if len(data) < 13:
        raise corrupt_image()
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    check_dimensions((width, height), limits)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    screen = data[:pos]
    canvas = (width, height)
    frames: list[GifFrame] = []
    control = b""
    loop: int | None = None
    while pos < len(data) and data[pos] != _GIF_TRAILER:
        kind = data[pos]
        if kind == _GIF_IMAGE:
            frame = _gif_frame(data, pos, control)
            # Sizes first: a bomb's descriptor is checked even when its pixel data is cut off.
            canvas = (
                max(canvas[0], frame.left + frame.width),
                max(canvas[1], frame.top + frame.height),
            )
            check_dimensions(canvas, limits)
            check_frames(len(frames) + 1, canvas, limits)
            frame = _with_data(data, frame)
            frames.append(frame)
            pos, control = frame.end, b""
        elif kind == _GIF_EXTENSION and pos + 2 < len(data):
            label, first = data[pos + 1], pos + 2
            pos = _skip_sub_blocks(data, first)
            if label == _GIF_GRAPHIC_CONTROL and data[first] >= 4:
                control = data[first + 1 : first + 5]
            elif label == _GIF_PLAIN_TEXT:
                control = b""  # a plain-text block uses up the control block; browsers draw nothing
            elif label == _GIF_APPLICATION:
                loop = _gif_loop(data, first, loop)
        else:
            break  # junk after the last frame: browsers stop here too
    if not frames:
        raise corrupt_image()
    return GifLayout(screen=screen, canvas=canvas, frames=tuple(frames), loop=loop)


def _gif_frame(data: bytes, pos: int, control: bytes) -> GifFrame:
    """The image descriptor at ``pos``; ``end`` is not known yet (see ``_with_data``)."""
    if pos + 11 > len(data):
        raise corrupt_image()
    left, top, width, height, flags = struct.unpack_from("<HHHHB", data, pos + 1)
    if width == 0 or height == 0:
        raise corrupt_image()
    return GifFrame(left, top, width, height, pos, pos + 10, control, flags)


def _with_data(data: bytes, frame: GifFrame) -> GifFrame:
    """The frame with ``end`` just past its colour table and LZW data sub-blocks."""
    table = 3 << ((frame.flags & 7) + 1) if frame.flags & 0x80 else 0
    end = _skip_sub_blocks(data, frame.start + 10 + table + 1)  # + 1: LZW minimum code size
    return dataclasses.replace(frame, end=end)


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Offset just past a chain of data sub-blocks; a chain cut short is a truncated file."""
    while True:
        if pos >= len(data):
            raise corrupt_image()
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def _gif_loop(data: bytes, first: int, loop: int | None) -> int | None:
    identifier = data[first + 1 : first + 12]
    second = first + 1 + data[first]
    if identifier in _GIF_LOOP_APPS and data[second : second + 2] == b"\x03\x01":
        return int.from_bytes(data[second + 2 : second + 4], "little")
    return loop


def read_jpeg_scans(data: bytes) -> int:
    """Scans (SOS segments) of the first image; more than MAX_JPEG_SCANS is refused, and so is
    a file of more than MAX_JPEG_SEGMENTS segments.

    libjpeg runs every scan of a progressive JPEG over the whole coefficient buffer, however
    little data the scan holds: a 31-byte refinement scan repeated 1,000 times (125 KB) kept a
    16 MP decode busy for 11 s, and 20 MB of them would take hours. Millions of empty segments
    (4 bytes each) cost Pillow's marker loop seconds. Segments are skipped by their lengths
    (EXIF thumbnails and ICC profiles hold FF DA bytes of their own); the walk stops at EOI, as
    an MPO's later images are never decoded.
    """
    pos, scans, segments = 2, 0, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)  # junk between segments: libjpeg skips it too
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF or marker in _JPEG_STANDALONE:
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == _JPEG_EOI:
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _jpeg_too_complex("segments", MAX_JPEG_SEGMENTS)
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _JPEG_SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _jpeg_too_complex("scans", MAX_JPEG_SCANS)
            end = _JPEG_SCAN_END.search(data, pos)
            if end is None:
                break
            pos = end.start()
    return scans


def _jpeg_too_complex(limit: str, maximum: int) -> IntakeError:
    return IntakeError(
        f"The JPEG has more than {maximum} {limit}; it is not decoded.",
        code="corrupt_image",
        status=422,
        limit=limit,
        maximum=maximum,
    )


def check_heif_items(data: bytes) -> None:
    """Every item of a HEIF/AVIF file (its ``iloc`` box) must lie inside the file.

    libheif does not fail on a grid image whose tiles are missing: it paints them green (its
    ``strict_decoding`` option is off, and pillow_heif has no switch for it), so a phone photo
    cut short would be served half green. A cut file always leaves item extents pointing past
    its end; that is checked here. Extents in the ``idat`` box or in other items are not.
    """
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"meta":
            for child, child_start, child_end in _boxes(data, start + 4, end):  # + FullBox
                if child == b"iloc":
                    _check_iloc(data, child_start, child_end)
            return


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """ISO-BMFF boxes between ``start`` and ``end``: (type, payload start, payload end)."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            return  # not a box: what follows is the decoder's to judge
        yield kind, pos + header, min(pos + size, end)
        pos += size


class _Fields:
    """Big-endian unsigned integers of any byte width, read in order from ``data[pos:end]``."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, size: int) -> int:
        if self.pos + size > self.end:
            raise corrupt_image()  # an iloc box that runs past its own end
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value


def _check_iloc(data: bytes, start: int, end: int) -> None:
    fields = _Fields(data, start, end)
    version = fields.take(4) >> 24  # FullBox: version, then 24 bits of flags
    sizes = fields.take(2)
    offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
    base_size, index_size = (sizes >> 4) & 15, sizes & 15 if version in (1, 2) else 0
    wide = 4 if version == 2 else 2
    for _ in range(fields.take(wide)):
        fields.take(wide)  # item id
        method = fields.take(2) & 15 if version in (1, 2) else 0
        reference = fields.take(2)  # data_reference_index: 0 is this file
        in_this_file = method == 0 and reference == 0
        base = fields.take(base_size)
        extents = fields.take(2)
        if index_size + offset_size + length_size == 0:
            continue  # zero-width extents say nothing (and would cost nothing to read, forever)
        for _ in range(extents):
            fields.take(index_size)
            offset, length = base + fields.take(offset_size), fields.take(length_size)
            if in_this_file and offset + length > len(data):
                raise corrupt_image()


@dataclass(frozen=True)
class Header:
    """What a PNG or WebP header says: canvas size, frame count (1 for stills) and loop count."""

    size: tuple[int, int]
    frames: int
    loop: int = 0


def read_png(data: bytes, limits: IntakeLimits) -> Header:
    """IHDR size and the APNG ``acTL`` frame count (chunks before the first IDAT only)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise corrupt_image()
    size = struct.unpack_from(">II", data, 16)
    check_dimensions(size, limits)
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"acTL" and length >= 8:
            frames, plays = struct.unpack_from(">II", data, pos + 8)
            check_frames(frames, size, limits)
            return Header(size, max(frames, 1), plays)
        pos += 12 + length
    return Header(size, 1)


def read_webp(data: bytes, limits: IntakeLimits) -> Header:
    """Canvas size (VP8X, or the VP8/VP8L bitstream header) and the ANMF frames, counted lazily."""
    size: tuple[int, int] | None = None
    frames, loop, pos, chunks = 0, 0, 12, 0
    while pos + 8 <= len(data):
        chunks += 1
        if chunks > limits.max_frames + _WEBP_OTHER_CHUNKS:
            raise corrupt_image()  # thousands of non-frame chunks: a parser bomb, not an image
        kind = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + min(length, 30)]
        if kind == b"VP8X" and len(body) >= 10:
            size = (1 + _u24(body, 4), 1 + _u24(body, 7))
            check_dimensions(size, limits)
        elif kind == b"ANIM" and len(body) >= 6:
            loop = int.from_bytes(body[4:6], "little")
        elif kind == b"ANMF":
            if size is None or len(body) < 12:
                raise corrupt_image()  # frames without a canvas: not a valid animated WebP
            frame = (1 + _u24(body, 6), 1 + _u24(body, 9))
            check_dimensions(frame, limits)
            frames += 1
            check_frames(frames, size, limits)
        elif size is None and kind in (b"VP8 ", b"VP8L"):
            size = _bitstream_size(kind, body)
            if size is not None:
                check_dimensions(size, limits)
        pos += 8 + length + (length & 1)
    if size is None:
        raise corrupt_image()
    return Header(size, max(frames, 1), loop)


def _u24(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 3], "little")


def _bitstream_size(kind: bytes, body: bytes) -> tuple[int, int] | None:
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
