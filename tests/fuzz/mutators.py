"""Hypothesis strategies that turn real files into hostile ones (structure-aware mutation).

``hostile_inputs(seeds)`` draws, nine times out of ten, a seed file (a corpus file or a small
synthetic animation) and applies one to four mutations; otherwise pure random bytes, or random
bytes behind the magic number of a format we accept (so they reach a decoder). Mutations:

- byte level: XOR a byte, set a byte to a boundary value, insert random bytes, truncate;
- splice: insert a slice of another seed file;
- structure (``structure.units``): duplicate a JPEG segment / PNG chunk / RIFF chunk / GIF block /
  TIFF entry / ISO-BMFF box up to 64 times in place, drop one, or set its length field to a
  boundary value (0, 1, one off, twice, 0xFF.., 2^31 - 1);
- dimensions: set a declared width/height to a boundary value;
- PNG: optionally recompute every chunk CRC, so the mutation gets past Pillow's CRC check.

Every choice is a hypothesis draw, so failures shrink to a few small mutations of one seed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from tests.fuzz import craft
from tests.fuzz.structure import Unit, dimension_fields, file_format, fix_png_crcs, units
from tests.unit.corpus import corpus_bytes, corpus_dir

Seed = tuple[str, bytes]
Draw = st.DrawFn

MAGIC_BYTES = 16
BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
BOUNDARY_SIZES = (0, 1, 2, 255, 256, 4096, 12_000, 12_001, 65_535, 2**24 - 1, 2**31 - 1, 2**32 - 1)
MAGICS = (
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xdb",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"GIF89a",
    b"GIF87a",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"II*\x00",
    b"MM\x00*",
    b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
)


def synthetic_seeds() -> list[Seed]:
    """Small animations (GIF, APNG, animated WebP) and a progressive JPEG: cheap paths to the
    frame and scan code that the corpus only reaches through 200-350 KB files."""
    frames = [craft.picture(24, 16).rotate(angle) for angle in (0, 90, 180)]
    params = {"save_all": True, "append_images": frames[1:], "duration": 40, "loop": 0}
    return [
        ("synthetic.gif", craft.encoded(frames[0], "GIF", **params)),
        ("synthetic.apng", craft.encoded(frames[0], "PNG", **params)),
        ("synthetic-animated.webp", craft.encoded(frames[0], "WEBP", lossless=True, **params)),
        ("synthetic-progressive.jpg", craft.plain_jpeg(48, 32, progressive=True)),
    ]


def seed_files(max_bytes: int) -> list[Seed]:
    """Corpus files in a format we sniff, up to ``max_bytes`` each, plus the synthetic seeds."""
    names = sorted(p.name for p in corpus_dir().iterdir() if p.name != "MANIFEST.tsv")
    found = [(name, corpus_bytes(name)) for name in names]
    return [s for s in found if file_format(s[1]) and len(s[1]) <= max_bytes] + synthetic_seeds()


def _position(draw: Draw, data: bytes, inclusive: bool = False) -> int:
    """An offset: in the headers (first KB) or anywhere, past the magic number three times out
    of four (a broken magic number only tests the sniffer, which is cheap to reach otherwise)."""
    top = len(data) if inclusive else max(len(data) - 1, 0)
    region = draw(st.integers(0, 3))
    low = 0 if region == 3 else min(MAGIC_BYTES, top)
    high = min(top, 1024) if region == 0 else top
    return draw(st.integers(low, max(low, high)))


def flip(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    if not data:
        return data
    pos = _position(draw, data)
    value = draw(st.integers(1, 255))
    return data[:pos] + bytes([data[pos] ^ value]) + data[pos + 1 :]


def set_byte(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    if not data:
        return data
    pos = _position(draw, data)
    value = draw(st.sampled_from(BOUNDARY_BYTES))
    return data[:pos] + bytes([value]) + data[pos + 1 :]


def insert_random(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    pos = _position(draw, data, inclusive=True)
    noise = draw(st.binary(min_size=1, max_size=64))
    return data[:pos] + noise + data[pos:]


def truncate(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    return data[: _position(draw, data)]


def splice(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    _, other = draw(st.sampled_from(seeds))
    start = _position(draw, other)
    length = draw(st.integers(1, 4096))
    pos = _position(draw, data, inclusive=True)
    return data[:pos] + other[start : start + length] + data[pos:]


def _unit(draw: Draw, data: bytes, with_length: bool = False) -> Unit | None:
    found = [u for u in units(data) if u.length is not None or not with_length]
    if not found:
        return None
    return draw(st.sampled_from(found))


def duplicate_unit(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    unit = _unit(draw, data)
    if unit is None:
        return data
    copies = draw(st.integers(1, 64))
    piece = data[unit.start : unit.end]
    return data[: unit.end] + piece * copies + data[unit.end :]


def drop_unit(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    unit = _unit(draw, data)
    return data if unit is None else data[: unit.start] + data[unit.end :]


def tweak_length(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    unit = _unit(draw, data, with_length=True)
    if unit is None or unit.length is None:
        return data
    field = unit.length
    current = field.read(data)
    choices = sorted({0, 1, current - 1, current + 1, 2 * current, *BOUNDARY_SIZES} - {-1})
    out = bytearray(data)
    field.write(out, draw(st.sampled_from(choices)))
    return bytes(out)


def tweak_dimensions(draw: Draw, data: bytes, seeds: Sequence[Seed]) -> bytes:
    pairs = dimension_fields(data)
    if not pairs:
        return data
    width, height = draw(st.sampled_from(pairs))
    out = bytearray(data)
    for field in (width, height):
        if draw(st.booleans()):
            field.write(out, draw(st.sampled_from(BOUNDARY_SIZES)))
    return bytes(out)


Mutation = Callable[[Draw, bytes, Sequence[Seed]], bytes]
MUTATIONS: tuple[Mutation, ...] = (
    flip,
    set_byte,
    insert_random,
    truncate,
    splice,
    duplicate_unit,
    drop_unit,
    tweak_length,
    tweak_dimensions,
)


@st.composite
def mutated(draw: Draw, seeds: Sequence[Seed]) -> bytes:
    _, data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(MUTATIONS))(draw, data, seeds)
    if file_format(data) == "png" and draw(st.booleans()):
        data = fix_png_crcs(data)
    return data


@st.composite
def magic_then_noise(draw: Draw) -> bytes:
    magic = draw(st.sampled_from(MAGICS))
    noise = draw(st.binary(max_size=2048))
    if magic.startswith(b"RIFF"):  # a RIFF size that matches, so the chunk walk starts
        magic = magic[:4] + struct.pack("<I", len(magic) + len(noise) - 8) + magic[8:]
    return magic + noise


@st.composite
def hostile_inputs(draw: Draw, seeds: Sequence[Seed]) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=4096))
    if kind == 1:
        return draw(magic_then_noise())
    return draw(mutated(seeds))
