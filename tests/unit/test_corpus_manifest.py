"""Every row of the shared corpus MANIFEST.tsv gets the behaviour its ``expected_behaviour`` states.

How a row's text becomes an expectation (nothing is skipped; a row no rule understands fails):
- "reject ..." -> refused with a 4xx whose code comes from the quoted reason (``REASON_CODES``) or,
  for the one row without a quoted reason, from ``REJECT_CODES``;
- "accept ..." -> accepted and re-encoded, unless ``NOT_AS_MANIFEST`` says otherwise and why;
- HEIF/AVIF rows allow "415 if left out of scope": they follow ``accepted_formats()``.
Accepted outputs (and thumbnails) are checked at the byte level for EXIF/XMP/IPTC/COM/tEXt/iTXt/
zTXt/eXIf (an sRGB ICC profile would be allowed); the Landscape_1..8 set must come out upright;
the sizes the text names ("output is 1800x1200", "-> 1536x2048", "(640x427)") must match;
animations keep their frame counts ("N frames"), MPO/multi-page TIFF keep one on purpose; photos
(JPEG, MPO, HEIF rows) come out no larger than they went in.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services.ingest.intake import IntakeLimits, SanitizedImage, accepted_formats, sanitize
from services.shared.errors import IntakeError
from tests.unit.corpus import corpus_bytes, corpus_path

LIMITS = IntakeLimits()

# hopper_bad_exif.jpg really has corrupt EXIF; Pillow says so while we read the orientation.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

# The quoted reason in a "reject with 4xx "..."" row -> our error code.
REASON_CODES = {
    "empty file": "empty_file",
    "unsupported type": "unsupported_type",
    "not an image": "unsupported_type",
    # xcrn0g04.png: its PNG signature is mangled, so no accepted type is recognised at all.
    "not a valid image": "unsupported_type",
    "image dimensions too large": "dimensions_too_large",
    "corrupt/truncated image": "corrupt_image",
}
# Reject rows whose text names no reason.
REJECT_CODES = {
    # "reject with 4xx; must not inflate the text chunk": Pillow refuses the oversized zTXt chunk
    # while reading the headers (before any pixel or text is inflated into memory).
    "png_decompression_dos.png": "corrupt_image",
}
# Rows that cannot behave as the manifest says, with the behaviour they get instead.
NOT_AS_MANIFEST = {
    # Manifest: "accept (pixels decode)". Its IDAT zlib stream is itself broken (invalid row
    # filters, stream cut short): Pillow 13's load() raises "unrecognized data stream contents",
    # as Pillow's own tests expect. "decodes OK" only holds with LOAD_TRUNCATED_IMAGES or on a
    # second load() after a failed one, which would serve half-garbage pixels. C02 (unreadable
    # EXIF, fine pixels) is covered in test_intake.py with a synthetic PNG instead.
    "broken_data_stream.png": "corrupt_image",
}
_OUT_OF_SCOPE_CODEC = {"HEIF": "heif", "AVIF": "avif"}
_PHOTO_FORMATS = frozenset({"JPEG", "MPO", "HEIF"})


def _rows() -> list[dict[str, str]]:
    lines = corpus_path("MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]


ROWS = {row["filename"]: row for row in _rows()}


def expected_code(name: str) -> str | None:
    """The error code this row must be refused with, or None when it must be accepted."""
    row = ROWS[name]
    text = row["expected_behaviour"]
    if name in NOT_AS_MANIFEST:
        return NOT_AS_MANIFEST[name]
    codec = _OUT_OF_SCOPE_CODEC.get(row["format"].split()[0])
    if codec is not None and codec not in accepted_formats():
        assert "415" in text, "the manifest allows a 415 for this codec only when it says so"
        return "unsupported_type"
    if text.startswith("accept"):
        return None
    assert text.startswith("reject"), f"no rule for {name}: {text!r}"
    quoted = re.search(r'"([^"]+)"', text)
    if quoted and quoted.group(1) in REASON_CODES:
        return REASON_CODES[quoted.group(1)]
    assert name in REJECT_CODES, f"reject row with no known reason: {name}: {text!r}"
    return REJECT_CODES[name]


ACCEPTED = [name for name in ROWS if expected_code(name) is None]
REFUSED = [name for name in ROWS if expected_code(name) is not None]


@functools.cache
def outcome(name: str) -> SanitizedImage | IntakeError:
    """One sanitize() per corpus file for the whole module."""
    try:
        return sanitize(corpus_bytes(name), LIMITS)
    except IntakeError as exc:
        return exc


def accepted(name: str) -> SanitizedImage:
    result = outcome(name)
    assert isinstance(result, SanitizedImage), f"{name} refused: {result.to_dict()}"
    return result


# --- byte-level metadata scan --------------------------------------------------------------------

_NEEDLES = {
    b"Exif\x00\x00": "EXIF",
    b"http://ns.adobe.com/xap/1.0/": "XMP",
    b"<x:xmpmeta": "XMP",
    b"Photoshop 3.0": "IPTC",
    b"8BIM": "IPTC",
}
_JPEG_METADATA = {0xE1: "APP1 (EXIF/XMP)", 0xED: "APP13 (IPTC)", 0xFE: "COM"}
_PNG_METADATA = {b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"tIME"}
_PNG_CLEAN = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"pHYs"}
_WEBP_CLEAN = {b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"}
_WEBP_VP8X_METADATA_FLAGS = 0x08 | 0x04  # EXIF, XMP


def metadata_found(data: bytes) -> list[str]:
    """Metadata carriers in an encoded JPEG, PNG or WebP: [] when clean (sRGB ICC allowed)."""
    found = [name for needle, name in _NEEDLES.items() if needle in data]
    if data[:2] == b"\xff\xd8":
        found += _jpeg_metadata(data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        found += _png_metadata(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        found += _webp_metadata(data[12:])
    else:
        found.append("unknown container")
    return found


def _icc_is_srgb(payload: bytes) -> bool:
    return b"sRGB" in payload


def _jpeg_metadata(data: bytes) -> list[str]:
    found, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        payload = data[pos + 4 : pos + 2 + length]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        if marker in _JPEG_METADATA:
            found.append(_JPEG_METADATA[marker])
        elif marker == 0xE2 and not (payload.startswith(b"ICC_PROFILE") and _icc_is_srgb(payload)):
            found.append("APP2")
        elif 0xE3 <= marker <= 0xEF or (marker == 0xE0 and not payload.startswith(b"JFIF")):
            found.append(f"APP{marker - 0xE0}")
        pos += 2 + length
    return found


def _png_metadata(data: bytes) -> list[str]:
    found, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        payload = data[pos + 8 : pos + 8 + length]
        if kind in _PNG_METADATA or (kind == b"iCCP" and not payload.startswith(b"sRGB")):
            found.append(kind.decode("latin-1"))
        elif kind not in _PNG_CLEAN and kind != b"iCCP":
            found.append(f"unexpected {kind!r}")
        pos += 12 + length
    return found


def _webp_metadata(chunks: bytes) -> list[str]:
    found, pos = [], 0
    while pos + 8 <= len(chunks):
        kind = chunks[pos : pos + 4]
        length = int.from_bytes(chunks[pos + 4 : pos + 8], "little")
        payload = chunks[pos + 8 : pos + 8 + length]
        if kind == b"VP8X" and payload[0] & _WEBP_VP8X_METADATA_FLAGS:
            found.append("VP8X metadata flags")
        if kind == b"ANMF":
            found += _webp_metadata(payload[16:])  # the frame's own chunks
        elif kind == b"ICCP" and _icc_is_srgb(payload):
            pass
        elif kind not in _WEBP_CLEAN:
            found.append(kind.decode("latin-1"))
        pos += 8 + length + (length & 1)
    return found


def test_the_metadata_scan_sees_what_uploads_carry() -> None:
    """The scanner itself: every carrier in the corpus samples is found."""
    assert "EXIF" in metadata_found(corpus_bytes("DSCN0010.jpg"))
    assert "XMP" in metadata_found(corpus_bytes("DSCN0010.jpg"))
    assert "APP13 (IPTC)" in metadata_found(corpus_bytes("iptc.jpg"))
    assert "tIME" in metadata_found(corpus_bytes("transparent.png"))
    assert "tEXt" in metadata_found(corpus_bytes("exif_imagemagick_orientation.png"))
    assert "XMP " in metadata_found(corpus_bytes("flower2.webp"))
    assert "iTXt" in metadata_found(corpus_bytes("xmp_tags_orientation.png"))
    with_comment = io.BytesIO()
    Image.new("RGB", (8, 8)).save(with_comment, "JPEG", comment=b"hello")
    assert "COM" in metadata_found(with_comment.getvalue())
    with_exif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(with_exif, "PNG", exif=Image.Exif().tobytes())
    assert "eXIf" in metadata_found(with_exif.getvalue())
    zipped = io.BytesIO()
    Image.new("RGB", (8, 8)).save(zipped, "PNG", pnginfo=_png_text(b"zTXt"))
    assert "zTXt" in metadata_found(zipped.getvalue())


def _png_text(kind: bytes) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "hi", zip=kind == b"zTXt")
    return info


# --- the rows ------------------------------------------------------------------------------------


def test_every_manifest_row_has_an_expectation() -> None:
    assert sorted(ACCEPTED + REFUSED) == sorted(ROWS)
    assert set(NOT_AS_MANIFEST) <= set(ROWS) and set(REJECT_CODES) <= set(ROWS)


@pytest.mark.parametrize("name", REFUSED)
def test_refused_rows_get_their_4xx(name: str) -> None:
    result = outcome(name)
    assert isinstance(result, IntakeError), f"{name} was accepted"
    assert 400 <= result.status < 500
    assert result.code == expected_code(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_rows_are_reencoded_without_metadata(name: str) -> None:
    source = corpus_bytes(name)
    out = accepted(name)
    assert out.data != source
    assert metadata_found(out.data) == []
    assert metadata_found(out.thumbnail) == []
    img = Image.open(io.BytesIO(out.data))
    assert (img.format or "").lower() == out.format
    assert out.content_type == f"image/{out.format}"
    assert img.size == (out.width, out.height)
    assert max(img.size) <= LIMITS.max_long_edge
    assert "icc_profile" not in img.info and not img.getexif()


_SIZE_IN_TEXT = re.compile(r"(?:output is |output |-> |\()(\d+)x(\d+)")


@pytest.mark.parametrize(
    "name", [n for n in ACCEPTED if _SIZE_IN_TEXT.search(ROWS[n]["expected_behaviour"])]
)
def test_accepted_rows_have_the_size_the_manifest_names(name: str) -> None:
    match = _SIZE_IN_TEXT.search(ROWS[name]["expected_behaviour"])
    assert match is not None
    out = accepted(name)
    assert (out.width, out.height) == (int(match.group(1)), int(match.group(2)))


@pytest.mark.parametrize("n", range(1, 9))
def test_landscape_orientations_come_out_upright(n: int) -> None:
    """Landscape_1 is stored upright: every Landscape_n output must look like it."""
    upright = np.asarray(Image.open(corpus_path("Landscape_1.jpg")).convert("RGB"), dtype=np.int16)
    out = accepted(f"Landscape_{n}.jpg")
    pixels = np.asarray(Image.open(io.BytesIO(out.data)).convert("RGB"), dtype=np.int16)
    assert pixels.shape == upright.shape
    assert np.abs(pixels - upright).mean() < 6  # a wrong rotation or mirror gives about 74


_FRAMES_IN_FORMAT = re.compile(r"(\d+) frames")
_ONE_FRAME_ON_PURPOSE = ("first page only", "frame 1 only")


@pytest.mark.parametrize(
    "name", [n for n in ACCEPTED if _FRAMES_IN_FORMAT.search(ROWS[n]["format"])]
)
def test_multi_frame_rows_keep_their_frames(name: str) -> None:
    match = _FRAMES_IN_FORMAT.search(ROWS[name]["format"])
    assert match is not None
    source_frames = int(match.group(1))
    text = ROWS[name]["expected_behaviour"]
    out = accepted(name)
    served = Image.open(io.BytesIO(out.data))
    if any(phrase in text for phrase in _ONE_FRAME_ON_PURPOSE):
        assert (out.frames, out.animated, out.frames_dropped) == (1, False, True)
        assert getattr(served, "n_frames", 1) == 1
    else:
        assert (out.frames, out.animated, out.format) == (source_frames, True, "webp")
        assert getattr(served, "n_frames", 1) == source_frames
        assert getattr(Image.open(io.BytesIO(out.thumbnail)), "n_frames", 1) == 1


@pytest.mark.parametrize(
    "name", [n for n in ACCEPTED if ROWS[n]["format"].split()[0] in _PHOTO_FORMATS]
)
def test_photos_do_not_grow(name: str) -> None:
    assert len(accepted(name).data) <= len(corpus_bytes(name))
