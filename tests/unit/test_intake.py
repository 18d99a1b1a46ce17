"""services.ingest.intake: sniffing, limits, decoding, normalising, animation, watermark, speed.

Real sample files come from the shared corpus (see its MANIFEST.tsv, whose every row is checked in
test_corpus_manifest.py); bombs, animations with known frames and odd inputs are built here.
Tests named ``test_Cnn_...`` are the ingest rows of ../shared/bug-cases.md. Assertions look at
the output bytes, not just at what Pillow reports.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile
from PIL.GifImagePlugin import GifImageFile

from services.ingest.intake import (
    IntakeLimits,
    SanitizedImage,
    accepted_formats,
    sanitize,
    sniff_format,
)
from services.ingest.intake_frames import gif_frames
from services.ingest.intake_pixels import JPEG_DCT_FACTORS, jpeg_source_quality, shrink_factor
from services.ingest.intake_probe import read_gif
from services.shared.errors import IntakeError
from tests.unit.corpus import corpus_bytes
from tests.unit.test_corpus_manifest import metadata_found

LIMITS = IntakeLimits()

# hopper_bad_exif.jpg really has corrupt EXIF; Pillow says so while we read the orientation.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")


def _run(name: str, limits: IntakeLimits = LIMITS, watermark: str | None = None) -> SanitizedImage:
    return sanitize(corpus_bytes(name), limits, watermark)


def _refused(data: bytes, limits: IntakeLimits = LIMITS) -> IntakeError:
    with pytest.raises(IntakeError) as caught:
        sanitize(data, limits)
    assert 400 <= caught.value.status < 500
    return caught.value


def _decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _pixels(img: Image.Image) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(_pixels(a) - _pixels(b)).mean())


def _psnr(img: Image.Image, reference: np.ndarray[Any, np.dtype[np.float32]]) -> float:
    error = np.asarray(img.convert("RGB"), dtype=np.float64) - np.clip(reference, 0, 255)
    return float(10 * np.log10(255.0**2 / np.mean(error**2)))


def _lanczos_reference(img: Image.Image, size: tuple[int, int]) -> np.ndarray[Any, Any]:
    """Float (per-channel mode F) Lanczos resize: the quality reference for our 8-bit output."""
    bands = [band.convert("F").resize(size, Image.Resampling.LANCZOS) for band in img.split()]
    return np.stack([np.asarray(band) for band in bands], axis=-1)


def _as_srgb(img: Image.Image) -> Image.Image:
    """RGB pixels of a decoded source, through its ICC profile when it has one."""
    rgb = img.convert("RGB")
    icc = img.info.get("icc_profile")
    if not icc:
        return rgb
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    converted = ImageCms.profileToProfile(rgb, source, ImageCms.createProfile("sRGB"))
    assert converted is not None
    return converted


def _frames(data: bytes) -> list[tuple[Image.Image, int]]:
    """Every frame of an encoded animation (RGBA) and its duration."""
    img = Image.open(io.BytesIO(data))
    out = []
    for index in range(getattr(img, "n_frames", 1)):
        img.seek(index)
        img.load()
        out.append((img.convert("RGBA"), int(img.info.get("duration", 0))))
    return out


def _on_white(img: Image.Image) -> Image.Image:
    canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
    canvas.alpha_composite(img.convert("RGBA"))
    return canvas.convert("RGB")


def _encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _jpeg_markers(data: bytes) -> list[int]:
    """Segment markers up to the first scan (where the metadata segments live)."""
    markers, pos = [], 2
    while data[pos + 1] != 0xDA:
        markers.append(data[pos + 1])
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return markers


# --- generated inputs ----------------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares the size, with a token IDAT: enough for Image.open."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _one_bit_png(side: int) -> bytes:
    """A complete side x side 1-bit black PNG, compressed row by row (never held in memory)."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _photo(width: int, height: int, seed: int = 7) -> Image.Image:
    """Photo-like content: smooth gradients, hard edges, grain (built from separable parts)."""
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    red = 127 + 100 * np.sin(x / 97) * np.cos(y / 131)
    green = np.broadcast_to(x * (255 / width), (height, width))
    blue = 127 + 90 * (np.sin(x / 57) * np.cos(y / 57) + np.cos(x / 57) * np.sin(y / 57))
    base = np.stack([red, green, blue], axis=-1)
    base *= np.where((x // 200 + y // 200) % 2 == 0, 0.8, 1.0)[..., None]  # hard edges
    grain = np.random.default_rng(seed).normal(0, 3, size=(256, 256, 3)).astype(np.float32)
    base += np.tile(grain, (height // 256 + 1, width // 256 + 1, 1))[:height, :width]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo_12mp() -> bytes:
    """A 4000x3000 camera-size JPEG."""
    return _encoded(_photo(4000, 3000), "JPEG", quality=92)


# GIFs with known frames: every frame gets its own colour table and control block.
_PALETTE = [0, 0, 0, 255, 0, 0, 0, 0, 255, 0, 255, 0] + [0, 0, 0] * 252
KEY, RED, BLUE, GREEN = 0, 1, 2, 3
_RGBA = {RED: (255, 0, 0, 255), BLUE: (0, 0, 255, 255), GREEN: (0, 255, 0, 255)}


@dataclass(frozen=True)
class GifPart:
    pixels: np.ndarray[Any, np.dtype[np.uint8]]  # palette indices
    left: int = 0
    top: int = 0
    disposal: int = 1
    delay_cs: int = 10
    transparent: int | None = None


def _gif_block(part: GifPart) -> bytes:
    frame_img = Image.fromarray(part.pixels, mode="P")
    frame_img.putpalette(_PALETTE)
    single = _encoded(frame_img, "GIF", optimize=False)
    layout = read_gif(single, LIMITS)
    frame = layout.frames[0]
    block = bytearray(single[frame.start : frame.end])
    struct.pack_into("<HH", block, 1, part.left, part.top)
    if not block[9] & 0x80:  # move the single file's global colour table into the frame
        block[9] |= 0x80 | (single[10] & 7)
        block = block[:10] + layout.screen[13:] + block[10:]
    flags = (part.disposal << 2) | (part.transparent is not None)
    control = struct.pack("<BH", flags, part.delay_cs) + bytes([part.transparent or 0])
    return b"\x21\xf9\x04" + control + b"\x00" + bytes(block)


def _gif(
    size: tuple[int, int],
    parts: list[GifPart],
    *,
    loop: int | None = 0,
    comment: bytes | None = None,
) -> bytes:
    out = b"GIF89a" + struct.pack("<HHBBB", *size, 0, 0, 0)
    if loop is not None:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    if comment is not None:
        out += b"\x21\xfe" + bytes([len(comment)]) + comment + b"\x00"
    blocks = {id(part.pixels): _gif_block(part) for part in parts}
    return out + b"".join(blocks[id(part.pixels)] for part in parts) + b"\x3b"


def _fill(width: int, height: int, index: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.full((height, width), index, dtype=np.uint8)


def _disposal_gif() -> bytes:
    """20x20: red; blue 5x5 at (0,0) then cleared (disposal 2); green 5x5 at (10,10) with a
    transparent centre, then restored (disposal 3); a blue pixel at (19,19)."""
    green = _fill(5, 5, GREEN)
    green[2, 2] = KEY
    return _gif(
        (20, 20),
        [
            GifPart(_fill(20, 20, RED), delay_cs=0),
            GifPart(_fill(5, 5, BLUE), disposal=2, delay_cs=5),
            GifPart(green, 10, 10, disposal=3, delay_cs=20, transparent=KEY),
            GifPart(_fill(1, 1, BLUE), 19, 19, delay_cs=1),
        ],
        loop=3,
    )


def _expected_disposal_frames() -> list[np.ndarray[Any, np.dtype[np.uint8]]]:
    canvas = np.zeros((20, 20, 4), dtype=np.uint8)
    canvas[:, :] = _RGBA[RED]
    first = canvas.copy()
    canvas[0:5, 0:5] = _RGBA[BLUE]
    second = canvas.copy()
    canvas[0:5, 0:5] = 0  # disposal 2: cleared to transparent, as browsers do
    before_green = canvas.copy()
    canvas[10:15, 10:15] = _RGBA[GREEN]
    canvas[12, 12] = _RGBA[RED]  # the transparent pixel shows what was below
    third = canvas.copy()
    canvas = before_green  # disposal 3: restored
    canvas[19, 19] = _RGBA[BLUE]
    return [first, second, third, canvas]


# --- sniffing -------------------------------------------------------------------------------------


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"GIF87a\x01\x00", "gif"),
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"BM" + bytes(12) + (40).to_bytes(4, "little"), "bmp"),
        (b"BM" + bytes(12) + (7).to_bytes(4, "little"), None),
        (_ftyp(b"heic", b"mif1", b"heic"), "heif"),
        (_ftyp(b"mif1", b"mif1", b"heic"), "heif"),
        (_ftyp(b"avif", b"mif1", b"avif"), "avif"),
        (_ftyp(b"mif1", b"mif1", b"miaf", b"avif"), "avif"),
        (_ftyp(b"isom", b"isom", b"mp41"), None),
        (b"%PDF-1.7\n", None),
        (b"\xc5\xd0\xd3\xc6", None),  # EPS with a binary preview header
        (b"%!PS-Adobe-3.0 EPSF-3.0", None),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", None),  # OLE2 (.doc)
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_magic_bytes_only(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_corpus_files_sniff_as_their_format() -> None:
    assert sniff_format(corpus_bytes("sugarshack.mpo")) == "jpeg"
    assert sniff_format(corpus_bytes("xiaomi.heic")) == "heif"
    assert sniff_format(corpus_bytes("rot1mir0.avif")) == "avif"
    assert sniff_format(corpus_bytes("star.avifs")) == "avif"
    assert sniff_format(corpus_bytes("hopper.tif")) == "tiff"


# --- C01, C10: orientation ------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 9))
def test_C01_exif_orientation_is_applied_before_stripping(n: int) -> None:
    upright = _decoded(corpus_bytes("Landscape_1.jpg"))
    out = _run(f"Landscape_{n}.jpg")
    img = _decoded(out.data)
    assert (out.width, out.height) == img.size == (1800, 1200)
    assert 0x0112 not in img.getexif() and b"Exif" not in out.data
    assert _mean_diff(img, upright) < 6  # a wrong rotation or mirror gives about 74


def test_C01_orientation_survives_a_dct_scaled_decode() -> None:
    limits = IntakeLimits(max_long_edge=900)  # 1800 px -> DCT 1/2: exactly 900, no resize
    upright = _decoded(_run("Landscape_1.jpg", limits).data)
    out = _run("Landscape_6.jpg", limits)
    assert (out.width, out.height) == (900, 600)
    assert _mean_diff(_decoded(out.data), upright) < 6


@pytest.mark.parametrize(
    ("name", "transpose"),
    [
        ("exif_imagemagick_orientation.png", Image.Transpose.ROTATE_180),  # tEXt raw exif profile
        ("xmp_tags_orientation.png", Image.Transpose.ROTATE_180),  # XMP tiff:Orientation only
        ("hopper_orientation_6.webp", Image.Transpose.ROTATE_270),  # EXIF chunk in WebP
    ],
)
def test_C01_orientation_from_other_containers(name: str, transpose: Image.Transpose) -> None:
    stored = _as_srgb(_decoded(corpus_bytes(name)))
    out = _decoded(_run(name).data)
    right = _mean_diff(out, stored.transpose(transpose))
    assert right < 6
    assert right * 3 < _mean_diff(out, stored)


def test_C10_avif_container_rotation_and_camera_rotation_are_applied() -> None:
    if "avif" in accepted_formats():
        out = _run("rot1mir0.avif")
        assert (out.width, out.height) == (640, 427)
    out = _run("canon_hdr_NO.jpg")
    assert (out.width, out.height) == (1536, 2048)


# --- C02: unreadable metadata ---------------------------------------------------------------------


def test_C02_unreadable_exif_means_no_rotation_not_an_error() -> None:
    pixels = _encoded(Image.new("RGB", (40, 20), (10, 200, 30)), "PNG")
    broken = pixels[:33] + _chunk(b"eXIf", b"garbage, not a TIFF header") + pixels[33:]
    with pytest.raises(SyntaxError):
        Image.open(io.BytesIO(broken)).getexif()  # the input really is unreadable for Pillow
    out = sanitize(broken, LIMITS)
    assert (out.width, out.height) == (40, 20)
    assert metadata_found(out.data) == []
    out = _run("hopper_bad_exif.jpg")  # Pillow warns "Corrupt EXIF data"
    assert (out.width, out.height) == (500, 500)


# --- C03, C04: colour -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif"])
def test_C03_cmyk_becomes_rgb_and_every_later_step_works(name: str) -> None:
    source = _decoded(corpus_bytes(name))
    assert source.mode == "CMYK"
    out = _run(name)
    img = _decoded(out.data)
    assert img.mode == "RGB" and out.format == "jpeg"
    assert _mean_diff(img, source.convert("RGB")) < 10  # inverted CMYK would give about 240
    assert _decoded(out.thumbnail).mode == "RGB"


def test_C04_adobe_rgb_photo_is_converted_to_srgb_and_its_profile_dropped() -> None:
    source = _decoded(corpus_bytes("xmp_test.jpg"))
    assert b"Adobe RGB" in source.info["icc_profile"]
    img = _decoded(_run("xmp_test.jpg").data)
    assert "icc_profile" not in img.info
    assert _mean_diff(img, _as_srgb(source)) < 4  # JPEG re-encoding noise only


def test_C04_display_p3_heic_is_converted_to_srgb() -> None:
    assert "heif" in accepted_formats()
    source = _decoded(corpus_bytes("arrow.heic"))
    display_p3 = source.info["icc_profile"]
    assert b"Display P3" in display_p3
    out = _run("arrow.heic")
    assert (out.width, out.height) == (1512, 2016)  # reduce(2): in the band, no Lanczos
    img = _decoded(out.data)
    assert _mean_diff(img, _as_srgb(source).reduce(2)) < 2
    assert _mean_diff(img, _as_srgb(source).reduce(2)) < _mean_diff(img, source.reduce(2))
    # The arrow is mostly paper: stronger colours under the same profile show the conversion
    # (P3 (200, 60, 60) is sRGB (217, 42, 52); P3 (60, 160, 60) is sRGB (0, 163, 40)).
    saturated = Image.new("RGB", (64, 32), (200, 60, 60))
    saturated.paste((60, 160, 60), (32, 0, 64, 32))
    upload = _encoded(saturated, "PNG", icc_profile=display_p3)
    converted = _decoded(sanitize(upload, LIMITS).data)
    saturated.info["icc_profile"] = display_p3
    assert _mean_diff(converted, _as_srgb(saturated)) < 3
    assert _mean_diff(converted, saturated) > 12


def test_C04_big_icc_profile_is_not_carried_over() -> None:
    out = _run("icc_profile_big.jpg")
    assert len(out.data) < 200_000
    assert 0xE2 not in _jpeg_markers(out.data)  # APP2 carries ICC


def test_C04_icc_conversion_is_exact_and_keeps_alpha() -> None:
    adobe_rgb = _decoded(corpus_bytes("xmp_test.jpg")).info["icc_profile"]
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(20, 64, 4), dtype=np.uint8)
    pixels[..., 3] = np.arange(64) * 4  # some transparency, so the output is lossless PNG
    upload = Image.fromarray(pixels)
    out = sanitize(_encoded(upload, "PNG", icc_profile=adobe_rgb), LIMITS)
    img = _decoded(out.data)
    assert out.format == "png" and img.mode == "RGBA" and "icc_profile" not in img.info
    assert np.array_equal(np.asarray(img)[..., 3], pixels[..., 3])
    upload.info["icc_profile"] = adobe_rgb
    assert _mean_diff(img, _as_srgb(upload)) < 0.5
    assert _mean_diff(img, upload) > 5  # dropping the profile without converting is visible


@pytest.mark.parametrize("name", ["16bit.cropped.tif", "basi0g16.png"])
def test_sixteen_bit_grey_is_scaled_not_clipped(name: str) -> None:
    source = Image.open(io.BytesIO(corpus_bytes(name)))
    assert source.mode == "I;16"
    assert np.asarray(source.convert("L")).mean() > 250  # what a plain convert would give
    expected = np.asarray(source, dtype=np.float64).mean() / 257
    mean = np.asarray(_decoded(_run(name).data), dtype=np.float64).mean()
    assert mean < 250
    assert abs(mean - expected) < 2


def test_grey_sources_stay_grey() -> None:
    for name in ("hopper_bad_exif.jpg", "basi0g16.png"):
        out = _run(name, watermark="ChatPic")
        assert (out.format, _decoded(out.data).mode, _decoded(out.thumbnail).mode) == (
            "jpeg",
            "L",
            "L",
        ), name


# --- C05: alpha -----------------------------------------------------------------------------------


def test_C05_real_alpha_is_kept_in_png() -> None:
    source = _decoded(corpus_bytes("transparent.png"))
    out = _run("transparent.png")
    img = _decoded(out.data)
    assert (out.format, out.content_type, img.mode) == ("png", "image/png", "RGBA")
    assert np.array_equal(np.asarray(img)[..., 3], np.asarray(source)[..., 3])
    assert b"tIME" not in out.data and b"tEXt" not in out.data
    assert out.thumbnail_content_type == "image/webp"
    assert _decoded(out.thumbnail).mode == "RGBA"


@pytest.mark.parametrize(
    "name", ["p_trns_single.png", "transparent.gif", "rgba32.bmp", "transparent.webp"]
)
def test_C05_palette_and_other_transparency_is_kept(name: str) -> None:
    img = _decoded(_run(name).data)
    assert img.mode == "RGBA"
    assert np.asarray(img)[..., 3].min() == 0


def test_C05_fully_opaque_alpha_is_dropped() -> None:
    data = _encoded(Image.new("RGBA", (30, 30), (1, 2, 3, 255)), "PNG")
    out = sanitize(data, LIMITS)
    assert out.format == "jpeg" and _decoded(out.data).mode == "RGB"


# --- C06: animations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "frames"),
    [("iss634.gif", 42), ("iss634.apng", 41), ("iss634.webp", 42), ("star.avifs", 5)],
)
def test_C06_animated_gif_apng_webp_avif_keep_every_frame(name: str, frames: int) -> None:
    if name.endswith(".avifs") and "avif" not in accepted_formats():
        pytest.fail("Pillow here is built with AVIF: star.avifs must be accepted")
    out = _run(name)
    assert (out.format, out.content_type, out.animated, out.frames) == (
        "webp",
        "image/webp",
        True,
        frames,
    )
    served = _frames(out.data)
    assert len(served) == frames
    assert metadata_found(out.data) == []
    first = _decoded(out.thumbnail)  # a still of the first frame
    assert getattr(first, "n_frames", 1) == 1
    assert first.size == (out.width, out.height)  # all are under the thumbnail edge
    assert _mean_diff(_on_white(first), _on_white(served[0][0])) < 6


def test_C06_animated_gif_keeps_frames_durations_and_loop() -> None:
    source = Image.open(io.BytesIO(corpus_bytes("iss634.gif")))
    assert isinstance(source, GifImageFile)
    durations = []
    for index in range(source.n_frames):
        source.seek(index)
        durations.append(source.info["duration"])
    out = _run("iss634.gif")
    served = _frames(out.data)
    # GIF delays of 0-10 ms play as 100 ms in browsers; the WebP says so explicitly.
    assert [d for _, d in served] == [d if d > 10 else 100 for d in durations]
    assert Image.open(io.BytesIO(out.data)).info["loop"] == 0  # NETSCAPE 0: forever


def test_C06_webp_apng_and_avif_keep_their_own_durations() -> None:
    for name in ("iss634.webp", "iss634.apng", "star.avifs"):
        source = _frames(corpus_bytes(name))
        served = _frames(_run(name).data)
        assert [d for _, d in served] == [d for _, d in source], name


def test_C06_gif_disposal_is_composited_like_browsers_do() -> None:
    data = _disposal_gif()
    layout = read_gif(data, LIMITS)
    composited = [np.asarray(frame) for frame, _ in gif_frames(data, layout)]
    for got, expected in zip(composited, _expected_disposal_frames(), strict=True):
        assert np.array_equal(got, expected)


def test_C06_dispose_bgnd_gif_does_not_smear() -> None:
    """dispose_bgnd.gif: each frame's picture is cleared before the next (disposal 2)."""
    out = _run("dispose_bgnd.gif")
    served = _frames(out.data)
    assert out.frames == len(served) == 5
    source = Image.open(io.BytesIO(corpus_bytes("dispose_bgnd.gif")))
    assert isinstance(source, GifImageFile)
    extents = []
    for index in range(source.n_frames):
        source.seek(index)
        assert source.dispose_extent is not None and source.disposal_method in (1, 2)
        extents.append(source.dispose_extent)
    for index in range(1, 4):
        # The next frame shows nothing where this one was (transparent: cleared), unless the
        # next frame itself draws there.
        x0, y0, x1, y1 = extents[index]
        nx0, ny0, nx1, ny1 = extents[index + 1]
        alpha = np.asarray(served[index + 1][0])[..., 3].copy()
        alpha[ny0:ny1, nx0:nx1] = 0
        assert alpha[y0:y1, x0:x1].max() < 16, index
        assert alpha.min() < 16 < alpha.max()


def test_C06_synthetic_gif_frames_timing_and_loop_end_to_end() -> None:
    out = sanitize(_disposal_gif(), LIMITS)
    served = _frames(out.data)
    assert [d for _, d in served] == [100, 50, 200, 100]  # 0 and 10 ms -> 100 ms
    assert Image.open(io.BytesIO(out.data)).info["loop"] == 4  # NETSCAPE 3 repeats = 4 plays
    for (got, _), expected in zip(served, _expected_disposal_frames(), strict=True):
        got_rgba = np.asarray(got, dtype=np.int16)
        transparent = expected[..., 3] == 0
        assert (got_rgba[..., 3][transparent] < 32).all()
        assert np.abs(got_rgba[~transparent] - expected[~transparent]).mean() < 12


@pytest.mark.parametrize(("loop", "plays"), [(None, 1), (0, 0), (1, 2), (65535, 65535)])
def test_C06_gif_loop_counts_become_webp_play_counts(loop: int | None, plays: int) -> None:
    gif = _gif((4, 4), [GifPart(_fill(4, 4, RED)), GifPart(_fill(4, 4, BLUE))], loop=loop)
    assert Image.open(io.BytesIO(sanitize(gif, LIMITS).data)).info["loop"] == plays


def test_C06_identical_frames_are_merged_and_reported_honestly() -> None:
    red, blue = GifPart(_fill(4, 4, RED)), GifPart(_fill(4, 4, BLUE))
    out = sanitize(_gif((4, 4), [red, red, blue]), LIMITS)
    assert out.frames == len(_frames(out.data)) == 2
    assert [d for _, d in _frames(out.data)] == [200, 100]


def test_C06_large_animation_frames_are_capped_and_upright() -> None:
    frames = [Image.new("RGB", (600, 300), color) for color in ("red", "green", "blue")]
    data = _encoded(
        frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=80, lossless=True
    )
    out = sanitize(data, IntakeLimits(max_long_edge=200))
    assert (out.width, out.height, out.frames) == (200, 100, 3)
    assert [d for _, d in _frames(out.data)] == [80, 80, 80]


@pytest.mark.parametrize("name", ["sugarshack.mpo", "frame_size.mpo", "multipage.tiff"])
def test_C06_mpo_and_multipage_tiff_keep_the_first_frame_on_purpose(name: str) -> None:
    out = _run(name)
    assert (out.frames, out.animated, out.frames_dropped) == (1, False, True)
    assert getattr(_decoded(out.data), "n_frames", 1) == 1


def test_C06_stills_are_single_frames() -> None:
    for name in ("hopper.webp", "transparent.gif", "Landscape_1.jpg"):
        out = _run(name)
        assert (out.frames, out.animated, out.frames_dropped) == (1, False, False), name


# --- C07: one path for every format ---------------------------------------------------------------


def test_C07_gif_comment_extension_is_not_carried_over() -> None:
    still = _gif((8, 8), [GifPart(_fill(8, 8, RED))], comment=b"secret-comment")
    moving = _gif(
        (8, 8), [GifPart(_fill(8, 8, RED)), GifPart(_fill(8, 8, BLUE))], comment=b"secret-comment"
    )
    assert "comment" in Image.open(io.BytesIO(still)).info
    for data in (still, moving):
        out = sanitize(data, LIMITS)
        assert out.data != data and b"secret-comment" not in out.data + out.thumbnail
        assert "comment" not in _decoded(out.data).info


@pytest.mark.parametrize(
    "name", ["transparent.png", "hopper.webp", "iss634.gif", "Landscape_1.jpg"]
)
def test_C07_reuploading_our_own_output_still_changes_the_bytes(name: str) -> None:
    first = _run(name)
    second = sanitize(first.data, LIMITS)
    assert second.data != first.data
    assert second.format == first.format


def test_C07_reupload_of_a_lossless_animation_changes_the_bytes() -> None:
    first = sanitize(_disposal_gif(), LIMITS)
    second = sanitize(first.data, LIMITS)
    assert second.data != first.data and second.frames == first.frames


# --- C08: metadata stripping ----------------------------------------------------------------------


def test_C08_gps_photo_loses_exif_gps_xmp_and_iptc() -> None:
    source = corpus_bytes("DSCN0010.jpg")
    assert b"Exif" in source and b"http://ns.adobe.com/xap" in source  # the sample really has them
    out = sanitize(source, LIMITS)
    assert (out.format, out.content_type, out.width, out.height) == ("jpeg", "image/jpeg", 640, 480)
    for needle in (b"Exif", b"GPS", b"http://ns.adobe.com/xap", b"Photoshop", b"NIKON"):
        assert needle not in out.data
    assert _jpeg_markers(out.data)[0] == 0xE0
    assert not _decoded(out.data).getexif()
    assert metadata_found(out.data) == []


def test_C08_nonsense_gps_values_and_iptc_block() -> None:
    out = _run("exif_gps.jpg")
    assert metadata_found(out.data) == [] and (out.width, out.height) == (8, 8)
    assert b"Photoshop 3.0" in corpus_bytes("iptc.jpg")
    assert 0xED not in _jpeg_markers(_run("iptc.jpg").data)  # APP13


def test_C08_heic_with_gps_is_converted_without_it() -> None:
    source = corpus_bytes("xiaomi.heic")
    assert "heif" in accepted_formats()
    out = sanitize(source, LIMITS)
    assert (out.format, out.source_format) == ("jpeg", "heif")
    assert (out.width, out.height) == (2048, 1536)
    assert b"Exif" not in out.data and b"Xiaomi" not in out.data
    assert metadata_found(out.data) == [] and metadata_found(out.thumbnail) == []


def test_C08_animation_metadata_is_stripped_from_every_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "blue")]
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    data = _encoded(
        frames[0], "WEBP", save_all=True, append_images=frames[1:], exif=exif, xmp=b"<x:xmpmeta/>"
    )
    assert b"CameraMaker" in data and b"xmpmeta" in data
    out = sanitize(data, LIMITS)
    assert out.frames == 2 and b"CameraMaker" not in out.data and b"xmpmeta" not in out.data
    assert metadata_found(out.data) == []


# --- C09: HEIC / HEIF -----------------------------------------------------------------------------


def test_C09_heic_and_heif_are_accepted_and_converted() -> None:
    assert "heif" in accepted_formats()
    for name, fmt in [("arrow.heic", "jpeg"), ("RGBA_10__29x100.heif", "png")]:
        out = _run(name)
        assert (out.source_format, out.format) == ("heif", fmt), name
    assert _decoded(_run("RGBA_10__29x100.heif").data).mode == "RGBA"


def test_C09_a_codec_that_is_missing_gives_a_clear_415(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "services.ingest.intake.accepted_formats", lambda: frozenset({"jpeg", "png"})
    )
    error = _refused(corpus_bytes("xiaomi.heic"))
    assert (error.code, error.status) == ("unsupported_type", 415)
    assert "JPEG" in error.message and "PNG" in error.message


# --- C11: truncated -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["truncated_jpeg.jpg", "truncated_image.png", "shortfile.bmp", "broken_data_stream.png"]
)
def test_C11_truncated_or_broken_pixel_data_is_corrupt(name: str) -> None:
    error = _refused(corpus_bytes(name))
    assert (error.code, error.status) == ("corrupt_image", 422)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_C11_truncated_gif_and_animated_webp_are_corrupt() -> None:
    gif = _disposal_gif()
    assert _refused(gif[: len(gif) - 12]).code == "corrupt_image"
    webp = _run("iss634.webp").data
    assert _refused(webp[: len(webp) // 2]).code == "corrupt_image"


def test_C11_load_truncated_images_set_elsewhere_is_a_loud_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError):
        sanitize(corpus_bytes("truncated_jpeg.jpg"), LIMITS)


# --- C12: bombs -----------------------------------------------------------------------------------


def _must_not_open(*args: object, **kwargs: object) -> Image.Image:
    raise AssertionError("Image.open must not see this file")


def _must_not_load(self: ImageFile.ImageFile) -> None:
    raise AssertionError("pixels must not be decoded")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(corpus_bytes("decompression_bomb.gif"), id="gif-4-gigapixels"),
        pytest.param(corpus_bytes("reallybig.bmp"), id="bmp-6e12-pixels"),
        pytest.param(_one_bit_png(20_000), id="png-20000x20000-1bit"),
    ],
)
def test_C12_decompression_bombs_are_refused_quickly(data: bytes) -> None:
    started = time.perf_counter()
    error = _refused(data)
    assert time.perf_counter() - started < 1.0
    assert (error.code, error.status) == ("dimensions_too_large", 422)
    assert error.data["limit"] in {"width", "height", "pixels"}
    assert isinstance(error.data["maximum"], int)


def test_C12_png_text_chunk_bomb_is_refused_quickly() -> None:
    started = time.perf_counter()
    error = _refused(corpus_bytes("png_decompression_dos.png"))
    assert time.perf_counter() - started < 1.0
    assert error.code == "corrupt_image"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("size", "limit", "maximum"),
    [
        ((12_001, 10), "width", 12_000),
        ((10, 12_001), "height", 12_000),
        ((8_000, 8_000), "pixels", 50_000_000),
        ((10_000, 10_000), "pixels", 50_000_000),  # also over Pillow's warning threshold
    ],
)
def test_C12_dimension_limits_are_checked_from_the_header(
    size: tuple[int, int], limit: str, maximum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile.ImageFile, "load", _must_not_load)
    error = _refused(_png_header_only(*size))
    assert (error.code, error.status) == ("dimensions_too_large", 422)
    assert (error.data["limit"], error.data["maximum"]) == (limit, maximum)
    assert str(maximum) in error.message


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_C12_pillow_bomb_warning_raised_as_error_maps_to_the_same_refusal() -> None:
    error = _refused(_png_header_only(10_000, 10_000), IntakeLimits(max_pixels=200_000_000))
    assert (error.code, error.data["limit"]) == ("dimensions_too_large", "pixels")


def test_C12_configured_limits_apply() -> None:
    error = _refused(corpus_bytes("DSCN0010.jpg"), IntakeLimits(max_width=600))
    assert (error.data["limit"], error.data["maximum"], error.data["actual"]) == ("width", 600, 640)


def test_C12_out_of_memory_while_decoding_is_a_dimensions_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_memory(self: ImageFile.ImageFile) -> None:
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    assert _refused(corpus_bytes("hopper.bmp")).code == "dimensions_too_large"


def test_C12_unexpected_decoder_errors_are_corrupt_image_not_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(self: ImageFile.ImageFile) -> None:
        raise KeyError("codec went sideways")

    monkeypatch.setattr(ImageFile.ImageFile, "load", explode)
    error = _refused(corpus_bytes("hopper.bmp"))
    assert (error.code, error.status) == ("corrupt_image", 422)


def _many_frame_gif(frames: int, *, cut_after: int | None = None) -> bytes:
    """``frames`` alternating 1x1 frames; ``cut_after``: the file ends inside that frame."""
    data = _gif((1, 1), [GifPart(_fill(1, 1, RED)), GifPart(_fill(1, 1, BLUE))])
    first, second = read_gif(data, LIMITS).frames
    head, middle = first.start - 8, second.start - 8  # each frame: 8-byte control block, image
    pair = data[head:-1]  # two frames, no trailer
    body = pair * (frames // 2)
    if cut_after is None:
        return data[:head] + body + b"\x3b"
    cut = (cut_after // 2) * len(pair) + (cut_after % 2) * (middle - head) + 5
    return data[:head] + body[:cut]


def test_C12_gif_frames_are_counted_lazily_and_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "open", _must_not_open)
    started = time.perf_counter()
    error = _refused(_many_frame_gif(20_000))
    assert time.perf_counter() - started < 1.0
    assert (error.code, error.status) == ("too_many_frames", 422)
    assert (error.data["limit"], error.data["maximum"]) == ("frames", 300)
    assert "300" in error.message
    # The walk stops at frame 301: a file cut short at frame 400 is refused for its frames.
    assert _refused(_many_frame_gif(1_000, cut_after=400)).code == "too_many_frames"
    assert _refused(_many_frame_gif(1_000, cut_after=200)).code == "corrupt_image"


def test_C12_gif_total_pixels_over_all_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [GifPart(_fill(1, 1, RED)), GifPart(_fill(1, 1, BLUE), 4999, 4999)] * 12
    data = _gif((5000, 5000), parts)  # 24 frames x 25 MP = 600 MP > 500 MP
    monkeypatch.setattr(Image, "open", _must_not_open)
    error = _refused(data)
    assert (error.code, error.data["limit"], error.data["maximum"]) == (
        "too_many_frames",
        "total_pixels",
        500_000_000,
    )


def test_C12_every_gif_frame_size_is_checked() -> None:
    data = _gif((10, 10), [GifPart(_fill(10, 10, RED)), GifPart(_fill(2, 2, BLUE), 13_000, 0)])
    error = _refused(data)
    assert (error.code, error.data["limit"]) == ("dimensions_too_large", "width")


def _animation(fmt: str, frames: int, size: int = 2) -> bytes:
    """Distinct frames (encoders merge identical neighbours), losslessly so they stay distinct."""
    colours = [(index % 256, index // 256 * 64, 0) for index in range(frames)]
    images = [Image.new("RGB", (size, size), colour) for colour in colours]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _encoded(images[0], fmt, save_all=True, append_images=images[1:], duration=20, **extra)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_C12_apng_and_webp_frames_are_refused_from_the_headers(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _animation(fmt, 301)
    monkeypatch.setattr(Image, "open", _must_not_open)
    error = _refused(data)
    assert (error.code, error.data["limit"]) == ("too_many_frames", "frames")


def test_C12_avif_sequence_frames_are_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "avif" in accepted_formats()
    monkeypatch.setattr(ImageFile.ImageFile, "load", _must_not_load)
    error = _refused(corpus_bytes("star.avifs"), IntakeLimits(max_frames=4))
    assert (error.code, error.data["maximum"]) == ("too_many_frames", 4)
    error = _refused(corpus_bytes("star.avifs"), IntakeLimits(max_total_pixels=100_000))
    assert error.data["limit"] == "total_pixels"


def test_limits_are_validated() -> None:
    assert (LIMITS.max_frames, LIMITS.max_total_pixels) == (300, 500_000_000)
    for bad in ({"max_frames": 0}, {"max_bytes": 0}, {"jpeg_quality": 96}, {"webp_quality": 101}):
        with pytest.raises(ValueError):
            IntakeLimits(**bad)


# --- C13: not images ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", corpus_bytes("notjpeg.jpg")])
def test_C13_empty_file(data: bytes) -> None:
    error = _refused(data)
    assert (error.code, error.status) == ("empty_file", 400)


def test_oversize_input_is_refused_before_opening(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "open", _must_not_open)
    error = _refused(corpus_bytes("DSCN0010.jpg"), IntakeLimits(max_bytes=100_000))
    assert (error.code, error.status) == ("too_large", 413)
    assert error.data["limit"] == "bytes" and error.data["maximum"] == 100_000


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"


@pytest.mark.parametrize(
    "data",
    [
        corpus_bytes("test-ole-file.doc"),
        corpus_bytes("pillow_eps_1.eps"),
        corpus_bytes("xcrn0g04.png"),
        SVG,
        HTML,
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        b"P6\n1 1\n255\n\x00\x00\x00",  # PPM: Pillow reads it, we do not accept it
        b"\x00\x00\x01\x00\x01\x00\x10\x10",  # ICO
    ],
)
def test_C13_unsupported_types_never_reach_pillow(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "open", _must_not_open)
    error = _refused(data)
    assert (error.code, error.status) == ("unsupported_type", 415)


def test_C13_only_the_sniffed_plugin_runs() -> None:
    gif = _encoded(Image.new("P", (8, 8)), "GIF")
    error = _refused(b"\x89PNG\r\n\x1a\n" + gif)  # PNG magic, GIF body: not decoded as a GIF
    assert error.code == "corrupt_image"


def test_C13_junk_between_jpeg_segments_is_accepted_and_not_carried_over() -> None:
    source = corpus_bytes("junk_jpeg_header.jpg")
    out = sanitize(source, LIMITS)
    assert (out.width, out.height) == (1024, 768)
    assert out.data != source


# --- watermark ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", " ", "x" * 41, "line\nbreak", "tab\there", "\u202eevil", "nul\x00"]
)
def test_watermark_must_be_short_printable_text(text: str) -> None:
    with pytest.raises(IntakeError) as caught:
        sanitize(corpus_bytes("hopper.bmp"), LIMITS, text)
    assert (caught.value.code, caught.value.status) == ("invalid_watermark", 400)


def test_watermark_is_checked_before_anything_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "open", _must_not_open)
    with pytest.raises(IntakeError) as caught:
        sanitize(b"not even an image", LIMITS, "x" * 41)
    assert caught.value.code == "invalid_watermark"


def _grey(width: int, height: int) -> bytes:
    return _encoded(Image.new("RGB", (width, height), (90, 90, 90)), "PNG")


def _changed(plain: Image.Image, marked: Image.Image) -> tuple[int, int, int, int]:
    diff = np.abs(_pixels(plain) - _pixels(marked)).max(axis=-1) > 12
    ys, xs = np.nonzero(diff)
    assert xs.size, "the watermark changed nothing"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_watermark_is_drawn_bottom_right_semi_transparent_and_not_on_the_thumbnail() -> None:
    data = _grey(1200, 800)
    plain, marked = sanitize(data, LIMITS), sanitize(data, LIMITS, "ChatPic @someone")
    assert marked.thumbnail == plain.thumbnail
    left, top, right, bottom = _changed(_decoded(plain.data), _decoded(marked.data))
    assert left > 600 and top > 600 and right > 1100 and bottom > 740  # bottom-right corner
    region = _pixels(_decoded(marked.data))[top:bottom, left:right]
    assert 140 < region.max() < 235  # white text at ~60%: lighter than grey, never pure white
    assert region.min() > 25  # the dark outline is faint too


def test_watermark_scales_with_the_image() -> None:
    small, large = _grey(400, 300), _grey(1600, 1200)
    boxes = []
    for data in (small, large):
        plain, marked = sanitize(data, LIMITS), sanitize(data, LIMITS, "ChatPic")
        left, top, right, bottom = _changed(_decoded(plain.data), _decoded(marked.data))
        boxes.append((right - left, bottom - top))
    assert 3.0 < boxes[1][0] / boxes[0][0] < 5.0 and 3.0 < boxes[1][1] / boxes[0][1] < 5.0


def test_long_watermark_fits_the_width_and_tiny_images_do_not_crash() -> None:
    text = "shared on ChatPic by someone, 2026-12-01"
    assert len(text) == 40
    plain, marked = sanitize(_grey(300, 900), LIMITS), sanitize(_grey(300, 900), LIMITS, text)
    left, _, right, _ = _changed(_decoded(plain.data), _decoded(marked.data))
    assert right - left <= 0.8 * 300
    # Too small for any legible text: clipped at the left edge, never an error.
    for size in ((1, 1), (8, 8), (3, 40), (300, 900)):
        assert sanitize(_grey(*size), LIMITS, "W" * 40).width == size[0]


def test_watermark_is_on_every_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (400, 300), (60 + 40 * i, 60, 60)) for i in range(4)]
    data = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    plain, marked = sanitize(data, LIMITS), sanitize(data, LIMITS, "ChatPic")
    assert marked.thumbnail == plain.thumbnail and marked.frames == 4
    for (p, _), (m, _) in zip(_frames(plain.data), _frames(marked.data), strict=True):
        left, top, _, _ = _changed(p, m)
        assert left > 200 and top > 200


def test_watermark_on_transparent_still_keeps_alpha_elsewhere() -> None:
    data = _encoded(Image.new("RGBA", (300, 200), (0, 0, 0, 0)), "PNG")
    out = sanitize(data, LIMITS, "ChatPic")
    alpha = np.asarray(_decoded(out.data))[..., 3]
    assert out.format == "png" and alpha[:100, :150].max() == 0 and alpha.max() > 100


# --- speed: shrinking rule, quality, size ---------------------------------------------------------


@pytest.mark.parametrize(
    ("long_edge", "factors", "expected"),
    [
        (2048, JPEG_DCT_FACTORS, 1),  # at the cap
        (4000, JPEG_DCT_FACTORS, 2),  # 2000 px: in the band, no resize
        (4096, JPEG_DCT_FACTORS, 2),  # exactly the cap
        (3600, JPEG_DCT_FACTORS, 1),  # 1800 would be under 0.9 x cap: full decode + Lanczos
        (6000, JPEG_DCT_FACTORS, 2),  # 3000, then Lanczos to 2048
        (16000, JPEG_DCT_FACTORS, 8),  # 2000
        (4032, None, 2),  # reduce(2) = 2016
        (2592, None, 1),  # Lanczos 2592 -> 2048
        (6000, None, 3),  # reduce(3) = 2000
        (4100, None, 2),  # 2050: over the cap, so Lanczos from there
    ],
)
def test_shrink_rule(long_edge: int, factors: tuple[int, ...] | None, expected: int) -> None:
    assert shrink_factor(long_edge, 2048, factors) == expected


def test_12mp_photo_is_dct_scaled_without_a_resize(
    photo_12mp: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    resized: list[tuple[int, int]] = []
    original = Image.Image.resize

    def spy(self: Image.Image, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        resized.append(self.size)
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    started = time.perf_counter()
    out = sanitize(photo_12mp, LIMITS)
    assert time.perf_counter() - started < 3.0
    assert (out.width, out.height) == (2000, 1500)
    assert resized == [(334, 250)]  # only the thumbnail's last step, after reduce(6)
    assert _decoded(out.thumbnail).size == (320, 240)
    assert len(out.data) < len(photo_12mp)


@pytest.mark.parametrize(("size", "cap"), [((1600, 1200), 800), ((1700, 1100), 760)])
def test_fast_paths_keep_quality(size: tuple[int, int], cap: int) -> None:
    """DCT scaling (in the band) and DCT + Lanczos (out of it) against a float Lanczos reference."""
    source = _photo(*size, seed=11)
    data = _encoded(source, "JPEG", quality=95)
    out = sanitize(data, IntakeLimits(max_long_edge=cap))
    img = _decoded(out.data)
    reference = _lanczos_reference(_decoded(data), img.size)
    assert _psnr(img, reference) > 34


def test_thumbnails_follow_the_same_rule() -> None:
    assert _decoded(_run("Landscape_1.jpg").thumbnail).size == (300, 200)  # reduce(6), no resize
    assert _decoded(_run("hopper.bmp").thumbnail).size == (128, 128)  # never enlarged


def test_cached_colour_transforms_are_shared_safely_between_threads() -> None:
    data = corpus_bytes("xmp_test.jpg")
    expected = sanitize(data, LIMITS).data
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(lambda _: sanitize(data, LIMITS).data, range(8)))
    assert all(out == expected for out in outputs)


def test_output_quality_never_exceeds_a_jpeg_uploads_quality() -> None:
    assert jpeg_source_quality(_decoded(corpus_bytes("Landscape_1.jpg"))) == 73
    out = _run("Landscape_1.jpg")
    assert jpeg_source_quality(_decoded(out.data)) == 73
    assert len(out.data) <= len(corpus_bytes("Landscape_1.jpg"))
    high = _encoded(_photo(300, 200), "JPEG", quality=95)
    assert jpeg_source_quality(_decoded(sanitize(high, LIMITS).data)) == LIMITS.jpeg_quality


def test_alpha_and_png_sources_use_the_configured_quality() -> None:
    out = sanitize(_encoded(_photo(300, 200), "PNG"), IntakeLimits(jpeg_quality=60))
    assert jpeg_source_quality(_decoded(out.data)) == 60
