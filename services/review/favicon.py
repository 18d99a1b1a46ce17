"""The console's icon, served at ``/favicon.ico`` without a login (browsers ask for it on every
page, the login page too; it says nothing about anyone). A 16x16 PNG in an ICO wrapper, made
once from bytes here: no file, no image library."""

from __future__ import annotations

import struct
import zlib

SIZE = 16
_BLUE = (0x2B, 0x59, 0xC3, 0xFF)  # the console's button colour
_WHITE = (0xFF, 0xFF, 0xFF, 0xFF)
_CLEAR = (0, 0, 0, 0)


def _pixel(x: int, y: int) -> tuple[int, int, int, int]:
    """A rounded blue square with a white check mark."""
    if (x in (0, SIZE - 1)) and (y in (0, SIZE - 1)):
        return _CLEAR
    on_check = (3 <= x <= 6 and y == x + 4) or (6 <= x <= 12 and y == 16 - x)
    below = (3 <= x <= 6 and y == x + 5) or (6 <= x <= 12 and y == 17 - x)
    return _WHITE if on_check or below else _BLUE


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _png() -> bytes:
    rows = b"".join(
        b"\x00" + b"".join(bytes(_pixel(x, y)) for x in range(SIZE)) for y in range(SIZE)
    )
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


def _ico(png: bytes) -> bytes:
    directory = struct.pack("<HHH", 0, 1, 1)  # reserved, type 1 = icon, one image
    entry = struct.pack("<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(png), 6 + 16)
    return directory + entry + png


ICON = _ico(_png())
CONTENT_TYPE = "image/x-icon"
