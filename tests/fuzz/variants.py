"""The hostile cases: generated variants of every corpus file, plus hand-made families.

Per corpus file (deterministic: each variant's random choices come from ``random.Random`` seeded
with the file name, the family and the variant number):

- ``truncate``: cut at random points (the first one inside the first 512 bytes: the headers);
- ``flip``: random bytes XOR-ed with random values, in the headers (first 1 KB) or anywhere;
- ``dims``: the declared size (PNG IHDR, JPEG SOF, GIF screen and frames, WebP VP8X/VP8/VP8L/ANMF,
  BMP, TIFF, HEIF/AVIF ispe) patched to absurd values over the limits (must be refused, except in
  HEIF/AVIF, whose decoders may trust the bitstream instead of ``ispe``) or to lies within them
  (anything but a crash, hang or blow-up).

Hand-made families (``crafted``): EXIF with IFD loops, 3000-deep nesting and lying counts, in
JPEG, PNG and WebP; huge (10 MB) and broken ICC profiles in the same three; polyglots (JPEG+HTML
in a COM segment, after EOI and in XMP; JPEG+ZIP; PNG/GIF/WebP/BMP + HTML/ZIP/JS); other formats
and text named like images (must be 415); parser and decompression bombs.

``suite_cases`` is the sample the test suite runs (2 truncations and 4 flips per file, the
over-limit sizes, all crafted cases with bombs and profiles at 1-2 MB: ~620 inputs);
``campaign_cases`` is everything, at full size, for ``make fuzz``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from tests.fuzz import craft
from tests.fuzz.guard import Case
from tests.fuzz.structure import file_format, patch_dimensions
from tests.unit.corpus import corpus_bytes, corpus_dir

MiB = 1024 * 1024
# Over every limit (12000 wide or tall, 50 MP) whatever the field's width: 16-bit fields clamp
# 60000 to 65535, 14-bit VP8 fields to 16383; 7072 x 7072 is 50.01 MP with both sides in range.
OVER_LIMITS = ((60_000, 60_000), (60_000, 1), (1, 60_000), (7_072, 7_072), (2**31 - 1, 2**31 - 1))
# Within the limits, but not what the pixel data holds (or meaningless).
LIES = ((12_000, 4_166), (0, 0), (1, 1), (2**32 - 1, 2**32 - 1))
# HEIF/AVIF decoders may size the image from the bitstream and ignore a lying 'ispe'.
_ISPE_FORMATS = frozenset({"heif", "avif"})


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(part) for part in parts))


def corpus_files() -> list[tuple[str, bytes]]:
    names = sorted(p.name for p in corpus_dir().iterdir() if p.name != "MANIFEST.tsv")
    return [(name, corpus_bytes(name)) for name in names]


def truncations(name: str, data: bytes, count: int) -> list[Case]:
    if len(data) < 2:
        return []
    rng = _rng(name, "truncate")
    cuts = [rng.randrange(1, min(len(data), 512))]
    cuts += [rng.randrange(1, len(data)) for _ in range(count - 1)]
    return [Case(f"{name}~cut@{cut}", data[:cut], "truncate") for cut in cuts[:count]]


def flips(name: str, data: bytes, count: int, *, header: bool) -> list[Case]:
    if not data:
        return []
    where = "header" if header else "body"
    span = min(len(data), 1024) if header else len(data)
    cases = []
    for index in range(count):
        rng = _rng(name, "flip", where, index)
        out = bytearray(data)
        positions = sorted(rng.randrange(span) for _ in range(rng.randint(1, 4 if header else 16)))
        for pos in positions:
            out[pos] ^= rng.randrange(1, 256)
        label = ",".join(str(p) for p in positions[:4])
        cases.append(Case(f"{name}~flip-{where}#{index}@{label}", bytes(out), "flip"))
    return cases


def dimension_lies(name: str, data: bytes, *, lies: bool = True) -> list[Case]:
    fmt = file_format(data)
    cases = []
    over = "any" if fmt in _ISPE_FORMATS else "refuse"
    every_options = (False, True) if fmt in ("gif", "heif", "avif", "webp") else (False,)
    for every in every_options:
        scope = "all" if every else "first"
        for width, height in OVER_LIMITS:
            patched = patch_dimensions(data, width, height, every=every)
            if patched is not None:
                cases.append(Case(f"{name}~dims-{scope}={width}x{height}", patched, "dims", over))
        for width, height in LIES if lies else ():
            patched = patch_dimensions(data, width, height, every=every)
            if patched is not None:
                cases.append(Case(f"{name}~dims-{scope}={width}x{height}", patched, "dims"))
    return cases


def file_variants(name: str, data: bytes, *, full: bool) -> list[Case]:
    if full:
        return (
            truncations(name, data, 6)
            + flips(name, data, 3, header=True)
            + flips(name, data, 3, header=False)
            + dimension_lies(name, data)
        )
    dims = dimension_lies(name, data, lies=name in _LIE_SAMPLE)
    return (
        truncations(name, data, 2)
        + flips(name, data, 2, header=True)
        + flips(name, data, 2, header=False)
        + [c for c in dims if "first" in c.name and (c.expect == "any" or "60000x1" in c.name)]
    )


# One file per format gets the within-limits lies in the suite (they decode garbage: slower).
_LIE_SAMPLE = frozenset(
    {
        "Canon_40D.jpg",
        "basi3p08.png",
        "transparent.gif",
        "hopper.webp",
        "rgba32.bmp",
        "hopper.tif",
        "RGBA_10__29x100.heif",
        "rot1mir0.avif",
    }
)


def crafted(*, full: bool) -> list[Case]:
    """The hand-made families; ``full``: bombs and profiles at their full (20 MB-class) size."""
    cases: list[Case] = []
    containers = {
        "jpeg": craft.jpeg_with_exif,
        "png": craft.png_with_exif,
        "webp": craft.webp_with_exif,
    }
    for label, tiff in craft.exif_structures().items():
        for container, build in containers.items():
            if container == "jpeg" or full or label in _EXIF_SAMPLE:
                cases.append(Case(f"exif:{label} in {container}", build(tiff), "exif"))
    huge = 10 * MiB if full else 2 * MiB
    icc_containers: dict[str, Callable[[bytes], bytes]] = {
        "jpeg": craft.jpeg_with_icc,
        "png": craft.png_with_icc,
        "webp": craft.webp_with_icc,
    }
    for label, profile in craft.icc_profiles(huge).items():
        for container, wrap in icc_containers.items():
            cases.append(Case(f"icc:{label} in {container}", wrap(profile), "icc"))
    cases.append(Case("icc:chunks-1-1-3-of-3 in jpeg", craft.jpeg_icc_chunks_inconsistent(), "icc"))
    photo, png = corpus_bytes("Canon_40D.jpg"), corpus_bytes("transparent.png")
    gif, bmp = corpus_bytes("transparent.gif"), corpus_bytes("hopper.bmp")
    for label, data in craft.polyglots(photo, png, gif, bmp).items():
        cases.append(Case(f"polyglot:{label}", data, "polyglot", "accept"))
    for label, data in craft.foreign_files().items():
        cases.append(Case(f"foreign:{label}", data, "foreign", "unsupported_type"))
    cases += bombs(full=full)
    return cases


_EXIF_SAMPLE = frozenset({"ifd0-next-is-itself", "exif-ifd-nested-3000-deep"})


def bombs(*, full: bool) -> list[Case]:
    size = 20 * MiB - 64 * 1024 if full else 1 * MiB
    inflate = 1024 * MiB if full else 64 * MiB
    scans = 20_000 if full else 1000  # full: 620 KB of scans, ~4 min of libjpeg before the fix
    return [
        Case(f"bomb:tiff-{size >> 20}MB-ifd-chain", craft.tiff_ifd_chain(size // 126), "bomb"),
        Case(
            f"bomb:jpeg-{scans}-extra-scans",
            craft.jpeg_scan_flood(scans, side=4096 if full else 1024),
            "bomb",
            "corrupt_image",
        ),
        Case(
            f"bomb:jpeg-{size >> 20}MB-of-empty-COM",
            craft.jpeg_segment_flood(size),
            "bomb",
            "corrupt_image",
        ),
        Case(f"bomb:png-{size >> 20}MB-of-chunks", craft.png_chunk_flood(size), "bomb"),
        Case(
            f"bomb:png-{size >> 20}MB-of-chunks-after-IDAT",
            craft.png_chunk_flood(size, after_idat=True),
            "bomb",
        ),
        Case(f"bomb:gif-{size >> 20}MB-of-extensions", craft.gif_extension_flood(size), "bomb"),
        Case("bomb:webp-5000-chunks", craft.webp_chunk_flood(5000), "bomb", "corrupt_image"),
        Case(
            f"bomb:png-IDAT-inflates-{inflate >> 20}MB", craft.png_idat_zlib_bomb(inflate), "bomb"
        ),
        Case(
            f"bomb:png-iCCP-inflates-{inflate >> 20}MB", craft.png_iccp_zlib_bomb(inflate), "bomb"
        ),
        Case(
            f"bomb:png-zTXt-inflates-{inflate >> 20}MB", craft.png_ztxt_zlib_bomb(inflate), "bomb"
        ),
        Case(f"bomb:gif-1x1-with-{size >> 20}MB-LZW", craft.gif_lzw_overlong(size), "bomb"),
        Case(
            "bomb:apng-300-frames-of-2000x2000",
            craft.apng_declaring_frames(300, 2000),
            "bomb",
            "too_many_frames",
        ),
        Case(
            "bomb:apng-1e9-frames", craft.apng_declaring_frames(10**9, 8), "bomb", "too_many_frames"
        ),
        Case("bomb:tiff-7000x7000-in-16px-tiles", craft.tiff_tile_flood(7000), "bomb"),
        Case("bomb:jpeg-12000x4166-from-1KB", _lying_jpeg(), "bomb"),
    ]


def _lying_jpeg() -> bytes:
    patched = patch_dimensions(craft.plain_jpeg(16, 16), 12_000, 4_166)
    assert patched is not None
    return patched


def suite_cases() -> list[Case]:
    cases: list[Case] = []
    for name, data in corpus_files():
        cases += file_variants(name, data, full=False)
    return cases + crafted(full=False)


def campaign_cases() -> Iterator[Case]:
    for name, data in corpus_files():
        yield from file_variants(name, data, full=True)
    yield from crafted(full=True)
