"""Builders for hand-made hostile files: EXIF structures, ICC profiles, containers to put them in,
polyglots and parser bombs. Deterministic: the same bytes on every run (no clock, no global
random state; ``random.Random`` seeded with a string where noise is needed).
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Sequence

from PIL import Image, ImageCms, ImageDraw

from tests.fuzz.structure import jpeg_end, png_chunk

HTML = (
    b"<!DOCTYPE html><html><head><script>alert(document.domain)</script></head>"
    b"<body><img src=x onerror=alert(1)></body></html>"
)
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg" '
    b'width="64" height="64" onload="alert(1)"><script>alert(2)</script>'
    b'<rect width="64" height="64" fill="red"/></svg>'
)
PHP = b"<?php system($_GET['c']); ?>"


# --- small, deterministic base images ------------------------------------------------------------


def picture(width: int = 96, height: int = 64, mode: str = "RGB") -> Image.Image:
    """A gradient with a few shapes: not flat, so the encoders do real work."""
    img = Image.linear_gradient("L").resize((width, height)).convert(mode)
    draw = ImageDraw.Draw(img)
    draw.ellipse(
        (width // 4, height // 4, width // 2, height // 2), fill="red" if mode != "L" else 90
    )
    draw.rectangle((width // 2, 0, width - 1, height // 3), fill="blue" if mode != "L" else 200)
    return img


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def plain_jpeg(width: int = 96, height: int = 64, **params: object) -> bytes:
    return encoded(picture(width, height), "JPEG", quality=85, **params)


def plain_png() -> bytes:
    return encoded(picture(), "PNG")


def plain_gif() -> bytes:
    return encoded(picture().convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "GIF")


def vp8_chunk() -> bytes:
    """The 'VP8 ' chunk of a small lossy WebP (simple format: RIFF header + this one chunk)."""
    data = encoded(picture(), "WEBP", quality=80)
    assert data[12:16] == b"VP8 ", data[12:16]
    return data[12:]


# --- containers -----------------------------------------------------------------------------------


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) <= 0xFFFF - 2, len(payload)
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_insert(jpeg: bytes, *segments: bytes) -> bytes:
    """Segments inserted right after SOI."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def jpeg_with_exif(tiff: bytes, base: bytes | None = None) -> bytes:
    return jpeg_insert(base or plain_jpeg(), jpeg_segment(0xE1, b"Exif\x00\x00" + tiff))


def jpeg_with_icc(profile: bytes, base: bytes | None = None, chunk: int = 65519) -> bytes:
    """The profile split over APP2 'ICC_PROFILE' segments (at most 255 of them)."""
    parts = [profile[i : i + chunk] for i in range(0, len(profile), chunk)] or [b""]
    count = min(len(parts), 255)
    segments = [
        jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([index + 1, count]) + part)
        for index, part in enumerate(parts[:255])
    ]
    return jpeg_insert(base or plain_jpeg(), *segments)


def png_insert(png: bytes, *chunks: bytes) -> bytes:
    """Chunks inserted right after IHDR."""
    return png[:33] + b"".join(chunks) + png[33:]


def png_with_exif(tiff: bytes) -> bytes:
    return png_insert(plain_png(), png_chunk(b"eXIf", tiff))


def png_with_icc(profile: bytes, *, level: int = 6) -> bytes:
    return png_insert(
        plain_png(), png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(profile, level))
    )


def riff(chunks: Sequence[bytes]) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) & 1 else b""
    return kind + struct.pack("<I", len(payload)) + payload + pad


def webp_extended(*extra: bytes, flags: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    """VP8X + ``extra`` chunks (ICCP goes first, per the spec) + a real lossy bitstream."""
    width, height = size
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    iccp = [c for c in extra if c.startswith(b"ICCP")]
    rest = [c for c in extra if not c.startswith(b"ICCP")]
    return riff([riff_chunk(b"VP8X", vp8x), *iccp, vp8_chunk(), *rest])


def webp_with_exif(tiff: bytes) -> bytes:
    return webp_extended(riff_chunk(b"EXIF", tiff), flags=0x08)


def webp_with_icc(profile: bytes) -> bytes:
    return webp_extended(riff_chunk(b"ICCP", profile), flags=0x20)


# --- EXIF (TIFF structures) -----------------------------------------------------------------------

SHORT, LONG, ASCII, RATIONAL, UNDEFINED = 3, 4, 2, 5, 7
ORIENTATION, EXIF_IFD, GPS_IFD, INTEROP_IFD, MAKERNOTE = 0x0112, 0x8769, 0x8825, 0xA005, 0x927C


def ifd(entries: Sequence[tuple[int, int, int, int]], next_ifd: int, big: bool = False) -> bytes:
    """One IFD: (tag, type, count, value or offset) entries and the next-IFD offset."""
    order = ">" if big else "<"
    out = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        if kind == SHORT and count == 1:  # the value sits left-aligned in the 4-byte field
            out += struct.pack(order + "HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack(order + "HHII", tag, kind, count, value)
    return out + struct.pack(order + "I", next_ifd)


def tiff_header(big: bool = False) -> bytes:
    return b"MM\x00*\x00\x00\x00\x08" if big else b"II*\x00\x08\x00\x00\x00"


def ifd_size(entries: int) -> int:
    return 2 + 12 * entries + 4


def exif_structures() -> dict[str, bytes]:
    """EXIF blobs with loops, deep nesting and lying counts (IFD0 at offset 8)."""
    out: dict[str, bytes] = {}
    out["ifd0-next-is-itself"] = tiff_header() + ifd([(ORIENTATION, SHORT, 1, 6)], 8)
    ifd1 = 8 + ifd_size(1)
    out["ifd0-ifd1-ping-pong"] = (
        tiff_header()
        + ifd([(ORIENTATION, SHORT, 1, 6)], ifd1)
        + ifd([(ORIENTATION, SHORT, 1, 3)], 8)
    )
    out["sub-ifds-point-at-ifd0"] = tiff_header(big=True) + ifd(
        [(ORIENTATION, SHORT, 1, 8), (EXIF_IFD, LONG, 1, 8), (GPS_IFD, LONG, 1, 8)], 8, big=True
    )
    depth = 3000
    chain = b"".join(
        ifd([(EXIF_IFD, LONG, 1, 8 + ifd_size(1) * (i + 1))], 8 + ifd_size(1) * (i + 1))
        for i in range(depth - 1)
    )
    out["exif-ifd-nested-3000-deep"] = tiff_header() + chain + ifd([(ORIENTATION, SHORT, 1, 6)], 0)
    huge = [(0x0100 + (i % 700), LONG, 0x3FFFFFFF, 0xFFFFFF00) for i in range(2000)]
    out["2000-entries-with-huge-counts"] = tiff_header() + ifd(huge, 0)
    out["entry-count-0xffff-one-present"] = (
        tiff_header() + struct.pack("<H", 0xFFFF) + ifd([(ORIENTATION, SHORT, 1, 6)], 0)[2:]
    )
    weird = [
        (ORIENTATION, ASCII, 4, int.from_bytes(b"6\x00\x00\x00", "little")),
        (ORIENTATION, RATIONAL, 1, 0xFFFFFFF0),
        (ORIENTATION, SHORT, 5000, 0x10),
        (ORIENTATION, 99, 1, 6),
    ]
    out["orientation-wrong-types"] = tiff_header() + ifd(weird, 0)
    out["orientation-65535"] = tiff_header() + ifd([(ORIENTATION, SHORT, 1, 0xFFFF)], 0)
    note = random.Random("makernote").randbytes(60_000)
    exif_at = 8 + ifd_size(1)
    out["makernote-60k"] = (
        tiff_header()
        + ifd([(EXIF_IFD, LONG, 1, exif_at)], 0)
        + ifd([(MAKERNOTE, UNDEFINED, len(note), exif_at + ifd_size(1))], 0)
        + note
    )
    gps_at = 8 + ifd_size(1)
    zero_denominators = struct.pack("<6I", 1, 0, 2, 0, 0, 0)
    out["gps-rationals-divide-by-zero"] = (
        tiff_header()
        + ifd([(GPS_IFD, LONG, 1, gps_at)], 0)
        + ifd([(2, RATIONAL, 3, gps_at + ifd_size(1))], 0)
        + zero_denominators
    )
    out["ifd0-offset-past-the-end"] = b"II*\x00" + struct.pack("<I", 0xFFFFFFF0)
    return out


# --- ICC profiles ---------------------------------------------------------------------------------


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _with_size(profile: bytearray) -> bytes:
    profile[0:4] = struct.pack(">I", len(profile))
    return bytes(profile)


def icc_profiles(huge: int) -> dict[str, bytes]:
    """Broken or enormous profiles; ``huge`` bytes for the big ones (10 MB in the full set)."""
    base = srgb_profile()
    out: dict[str, bytes] = {}
    noise = bytearray(random.Random("icc-noise").randbytes(huge))
    noise[0:128] = bytes(128)
    noise[4:8], noise[8:12], noise[12:16] = b"lcms", b"\x02\x10\x00\x00", b"mntr"
    noise[16:20], noise[20:24], noise[36:40] = b"RGB ", b"XYZ ", b"acsp"
    noise[128:132] = struct.pack(">I", 0x00FFFFFF)
    out[f"random-{huge >> 20}MB"] = _with_size(noise)
    out[f"srgb-padded-to-{huge >> 20}MB"] = _with_size(bytearray(base) + bytes(huge))
    count_lie = bytearray(base)
    count_lie[128:132] = struct.pack(">I", 0x0FFFFFFF)
    out["tag-count-0x0fffffff"] = bytes(count_lie)
    offsets = bytearray(base)
    offsets[136:144] = struct.pack(">II", 0xFFFFFFF0, 0x00FFFFFF)
    out["first-tag-past-the-end"] = bytes(offsets)
    cmyk = bytearray(base)
    cmyk[16:20] = b"CMYK"
    out["cmyk-profile-on-rgb-pixels"] = bytes(cmyk)
    out["header-only"] = bytes(base[:128])
    return out


def jpeg_icc_chunks_inconsistent() -> bytes:
    """Three APP2 ICC segments numbered 1, 1, 3 of 3 (a missing and a repeated chunk)."""
    profile = srgb_profile()
    third = len(profile) // 3
    parts = [profile[:third], profile[third : 2 * third], profile[2 * third :]]
    segments = [
        jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([number, 3]) + part)
        for number, part in zip((1, 1, 3), parts, strict=True)
    ]
    return jpeg_insert(plain_jpeg(), *segments)


# --- polyglots ------------------------------------------------------------------------------------


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("index.html", date_time=(2020, 1, 1, 0, 0, 0))
        archive.writestr(info, HTML)
    return buffer.getvalue()


def gif_js_polyglot() -> bytes:
    """Valid GIF and valid JavaScript: the width bytes are '/*', the trailer starts '*/'.

    GIF89a/*<height, flags, 1x1 frame> ... comment '*/=1;alert(1);/*' ... ;*/ -> the JS engine
    sees the header as an identifier, a comment, then ``=1;alert(1);`` and another comment.
    """
    screen = b"GIF89a" + b"/*" + struct.pack("<H", 10) + b"\x00\x00\x00"  # no global table
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x80" + b"\xff\x00\x00\x00\x00\xff"
    frame += b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one sub-block, terminator
    comment = b"\x21\xfe" + bytes([len(b"*/=1;alert(1);/*")]) + b"*/=1;alert(1);/*" + b"\x00"
    return screen + frame + comment + b"\x3b" + b"*/"


def polyglots(photo: bytes, png: bytes, gif: bytes, bmp: bytes) -> dict[str, bytes]:
    """Images that are also HTML / ZIP / PDF / PHP / JavaScript / SVG (name -> bytes)."""
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + HTML
    end = jpeg_end(photo)
    return {
        "jpeg+html-in-COM": jpeg_insert(photo, jpeg_segment(0xFE, HTML)),
        "jpeg+html-after-EOI": photo[:end] + HTML,
        "jpeg+html-in-XMP": jpeg_insert(photo, jpeg_segment(0xE1, xmp)),
        "jpeg+svg-in-COM": jpeg_insert(photo, jpeg_segment(0xFE, SVG)),
        "jpeg+php-in-COM": jpeg_insert(photo, jpeg_segment(0xFE, PHP)),
        "jpeg+zip": photo[:end] + zip_archive(),
        "jpeg+pdf-after-EOI": photo[:end] + b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "png+html-in-tEXt": png_insert(png, png_chunk(b"tEXt", b"Comment\x00" + HTML)),
        "png+html-in-private-chunk": png_insert(png, png_chunk(b"htMl", HTML)),
        "png+zip-after-IEND": png + zip_archive(),
        "gif+js": gif_js_polyglot(),
        "gif+html-in-comment": gif[:-1] + _gif_comment(HTML) + b"\x3b",
        "gif+zip (GIFAR)": gif + zip_archive(),
        "webp+html-chunk": webp_extended(riff_chunk(b"HTML", HTML)),
        "bmp+html-after-pixels": bmp + HTML,
    }


def _gif_comment(text: bytes) -> bytes:
    blocks = b"".join(
        bytes([len(text[i : i + 255])]) + text[i : i + 255] for i in range(0, len(text), 255)
    )
    return b"\x21\xfe" + blocks + b"\x00"


# --- other formats, and text, named like images ---------------------------------------------------


def foreign_files() -> dict[str, bytes]:
    """Files in formats we refuse (415), whatever their name says."""
    tga = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 4, 4, 24, 0) + bytes(48)
    return {
        "svg.jpg": SVG,
        "svg-with-bom.png": b"\xef\xbb\xbf" + SVG,
        "svg-utf16.jpg": b"\xff\xfe" + SVG.decode().encode("utf-16-le"),
        "svg-leading-space.gif": b"\n  \t" + SVG,
        "svgz.png": gzip.compress(SVG, mtime=0),
        "html.png": HTML,
        "html-upper.jpg": HTML.upper(),
        "xhtml.webp": b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">'
        + HTML[15:],
        "javascript.gif": b"alert(document.cookie);//" + bytes(20),
        "php.jpg": PHP,
        "pdf.jpg": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\n",
        "postscript.png": b"%!PS-Adobe-3.0\n/Times findfont 12 scalefont setfont\n",
        "ico.png": b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00" + bytes(40),
        "cur.png": b"\x00\x00\x02\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00" + bytes(40),
        "psd.jpg": b"8BPS\x00\x01" + bytes(6) + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10",
        "jpeg2000.jpg": b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 ",
        "j2k-codestream.jpg": b"\xff\x4f\xff\x51\x00\x29" + bytes(40),
        "jpegxl-codestream.jpg": b"\xff\x0a\xfa\x7f\x01\x90\x08",
        "jpegxl-container.jpg": b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ",
        "qoi.png": b"qoif\x00\x00\x00\x10\x00\x00\x00\x10\x03\x00" + bytes(16),
        "dds.png": b"DDS \x7c\x00\x00\x00" + bytes(120),
        "pcx.png": b"\x0a\x05\x01\x08" + bytes(124),
        "tga.png": tga,
        "xbm.png": b"#define x_width 8\n#define x_height 1\nstatic char x_bits[] = {0x00};\n",
        "xpm.png": b'/* XPM */\nstatic char *x[] = {"1 1 1 1", "a c #000000", "a"};\n',
        "ppm.jpg": b"P6\n1 1\n255\n\x00\x00\x00",
        "pgm.jpg": b"P5\n1 1\n255\n\x00",
        "pam.jpg": b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n\x00",
        "sgi.png": b"\x01\xda\x00\x01\x00\x01" + bytes(500),
        "sun-raster.png": b"\x59\xa6\x6a\x95" + bytes(28),
        "fits.png": b"SIMPLE  =                    T" + bytes(50),
        "wmf.png": b"\xd7\xcd\xc6\x9a" + bytes(40),
        "emf.png": b"\x01\x00\x00\x00" + bytes(36) + b" EMF" + bytes(40),
        "zip.jpg": zip_archive(),
        "gzip.jpg": gzip.compress(b"hello", mtime=0),
        "7z.jpg": b"7z\xbc\xaf\x27\x1c" + bytes(26),
        "rar.jpg": b"Rar!\x1a\x07\x01\x00" + bytes(20),
        "elf.jpg": b"\x7fELF\x02\x01\x01" + bytes(57),
        "exe.jpg": b"MZ\x90\x00\x03" + bytes(59),
        "shell.jpg": b"#!/bin/sh\nrm -rf /tmp/x\n",
        "mp4.jpg": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
        "mov.jpg": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
        "canon-cr3.jpg": b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom",
        "avi.webp": b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(28),
        "wav.webp": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28),
        "riff-webx.webp": b"RIFF\x24\x00\x00\x00WEBXVP8 " + bytes(28),
        "bmp-unknown-header-size.bmp": b"BM" + bytes(12) + struct.pack("<I", 99) + bytes(80),
        "gif-truncated-magic.gif": b"GIF87",
        "png-signature-short.png": b"\x89PNG\r\n\x1a",
        "jpeg-two-bytes.jpg": b"\xff\xd8",
        "ole-renamed.jpg": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
    }


# --- parser bombs ---------------------------------------------------------------------------------


def tiff_ifd_chain(count: int) -> bytes:
    """A 1x1 TIFF whose IFD0 is followed by ``count`` copies chained by their next pointers."""
    data = bytearray(encoded(Image.new("L", (1, 1)), "TIFF"))
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    body = bytes(data[first + 2 : first + 2 + 12 * entries])
    size = ifd_size(entries)
    start = len(data)
    struct.pack_into("<I", data, first + 2 + 12 * entries, start)
    chain = bytearray()
    for index in range(count):
        nxt = start + size * (index + 1) if index < count - 1 else 0
        chain += struct.pack("<H", entries) + body + struct.pack("<I", nxt)
    return bytes(data + chain)


def jpeg_scan_flood(extra_scans: int, side: int = 1024) -> bytes:
    """A progressive JPEG whose last (refinement) scan is repeated ``extra_scans`` times."""
    data = encoded(Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", progressive=True)
    eoi = data.rfind(b"\xff\xd9")
    last = data.rfind(b"\xff\xda")
    return data[:eoi] + data[last:eoi] * extra_scans + data[eoi:]


def jpeg_segment_flood(total: int) -> bytes:
    """``total`` bytes of empty COM segments before the first scan."""
    photo = plain_jpeg()
    return jpeg_insert(photo, b"\xff\xfe\x00\x02" * (total // 4))


def png_chunk_flood(total: int, *, after_idat: bool = False) -> bytes:
    png = plain_png()
    flood = png_chunk(b"ruSt", b"") * (total // 12)
    if after_idat:
        return png[:-12] + flood + png[-12:]
    return png_insert(png, flood)


def gif_extension_flood(total: int) -> bytes:
    gif = plain_gif()
    return gif[:-1] + b"\x21\xfe\x00" * (total // 3) + b"\x3b"


def webp_chunk_flood(chunks: int) -> bytes:
    return webp_extended(*[riff_chunk(b"JUNK", b"")] * chunks)


def _deflate_zeros(total: int) -> bytes:
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(total >> 20)]
    return b"".join(parts) + compressor.flush()


def png_idat_zlib_bomb(total: int) -> bytes:
    """A 1x1 PNG whose IDAT stream inflates to ``total`` bytes (1 row of 2 bytes is needed)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", _deflate_zeros(total))
        + png_chunk(b"IEND", b"")
    )


def png_iccp_zlib_bomb(total: int) -> bytes:
    return png_insert(plain_png(), png_chunk(b"iCCP", b"icc\x00\x00" + _deflate_zeros(total)))


def png_ztxt_zlib_bomb(total: int) -> bytes:
    return png_insert(plain_png(), png_chunk(b"zTXt", b"Comment\x00\x00" + _deflate_zeros(total)))


def gif_lzw_overlong(total: int) -> bytes:
    """A 1x1 frame followed by ``total`` bytes of LZW sub-blocks it does not need."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    noise = random.Random("lzw").randbytes(total)
    blocks = b"".join(b"\xff" + noise[i : i + 255] for i in range(0, total - 254, 255))
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02" + blocks + b"\x00"
    return screen + frame + b"\x3b"


def apng_declaring_frames(frames: int, side: int) -> bytes:
    """An APNG whose acTL declares ``frames`` frames of side x side (only one is present)."""
    png = encoded(Image.new("RGB", (side, side)), "PNG")
    actl = png_chunk(b"acTL", struct.pack(">II", frames, 0))
    return png_insert(png, actl)


def tiff_tile_flood(side: int, tile: int = 16) -> bytes:
    """A side x side 8-bit grey tiled TIFF whose every tile points at the same 16x16 bytes."""
    per_row = -(-side // tile)
    tiles = per_row * per_row
    pixels = bytes(range(256))[: tile * tile]
    header = 8
    entries = 9
    ifd_at = header
    data_at = ifd_at + ifd_size(entries)
    offsets_at = data_at + len(pixels)
    counts_at = offsets_at + 4 * tiles
    tags = [
        (256, LONG, 1, side),
        (257, LONG, 1, side),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (322, LONG, 1, tile),
        (323, LONG, 1, tile),
        (324, LONG, tiles, offsets_at),
        (325, LONG, tiles, counts_at),
    ]
    return (
        tiff_header()
        + ifd(tags, 0)
        + pixels
        + struct.pack(f"<{tiles}I", *([data_at] * tiles))
        + struct.pack(f"<{tiles}I", *([len(pixels)] * tiles))
    )
