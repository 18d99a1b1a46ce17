"""services.ingest.intake: type sniffing, limits, decoding, normalising and metadata stripping.

Real sample files come from the shared corpus (see its MANIFEST.tsv); bombs and odd inputs are
built here. Assertions look at the output bytes, not just at what Pillow reports.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from services.ingest.intake import (
    IntakeLimits,
    SanitizedImage,
    accepted_formats,
    sanitize,
    sniff_format,
)
from services.shared.errors import IntakeError
from tests.unit.corpus import corpus_bytes, corpus_path

LIMITS = IntakeLimits()

# hopper_bad_exif.jpg really has corrupt EXIF; Pillow says so while we read the orientation.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

# MANIFEST rows marked "accept" that must not be accepted, and why.
NOT_ACCEPTED_AFTER_ALL = {
    # Its IDAT zlib stream is broken (invalid row filters, stream cut short): Pillow's load() raises
    # "unrecognized data stream contents" and Pillow's own test suite expects that error. The
    # manifest's "decodes OK" only holds with LOAD_TRUNCATED_IMAGES or on a second load() after a
    # failed one, which would serve half-garbage pixels. C02 (unreadable EXIF) is covered below
    # with a synthetic PNG whose pixels are fine and whose eXIf chunk is garbage.
    "broken_data_stream.png": "corrupt_image",
}


def _manifest_rows() -> list[dict[str, str]]:
    lines = corpus_path("MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]


ACCEPTED = sorted(
    row["filename"]
    for row in _manifest_rows()
    if row["expected_behaviour"].startswith("accept")
    and row["filename"] not in NOT_ACCEPTED_AFTER_ALL
)


def _run(name: str, limits: IntakeLimits = LIMITS) -> SanitizedImage:
    return sanitize(corpus_bytes(name), limits)


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


# --- byte-level metadata checks ------------------------------------------------------------------

_JPEG_ALLOWED_MARKERS = {0xE0, 0xDB, 0xC0, 0xC1, 0xC2, 0xC4, 0xDD, 0xDA}  # APP0 JFIF, tables, SOF
_PNG_ALLOWED_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
_WEBP_ALLOWED_CHUNKS = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH"}


def _jpeg_markers(data: bytes) -> list[int]:
    """Segment markers up to the first scan (where the metadata segments live)."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunks.append(kind)
        pos += 12 + length
    return chunks


def _webp_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, pos = [], 12
    while pos < len(data):
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        chunks.append(kind)
        pos += 8 + length + (length & 1)
    return chunks


def _assert_no_metadata(data: bytes) -> None:
    for needle in (b"Exif", b"http://ns.adobe.com/xap", b"Photoshop 3.0", b"8BIM", b"ICC_PROFILE"):
        assert needle not in data, needle
    if data[:2] == b"\xff\xd8":
        assert set(_jpeg_markers(data)) <= _JPEG_ALLOWED_MARKERS
    elif data[:4] == b"RIFF":
        assert set(_webp_chunks(data)) <= _WEBP_ALLOWED_CHUNKS
    else:
        assert set(_png_chunks(data)) <= _PNG_ALLOWED_CHUNKS
    img = _decoded(data)
    assert not img.getexif()
    assert "icc_profile" not in img.info and "exif" not in img.info and "xmp" not in img.info


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


def _encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_12mp() -> bytes:
    """A 4000x3000 photo-like JPEG: smooth gradients plus grain."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:3000, 0:4000]
    base = np.stack([x * 255 // 4000, y * 255 // 3000, (x + y) * 255 // 7000], axis=-1)
    grain = rng.integers(-12, 13, size=base.shape)
    pixels = np.clip(base + grain, 0, 255).astype(np.uint8)
    return _encoded(Image.fromarray(pixels), "JPEG", quality=92)


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


# --- every accepted corpus file -------------------------------------------------------------------


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_files_are_reencoded_without_metadata(name: str) -> None:
    source = corpus_bytes(name)
    out = sanitize(source, LIMITS)
    assert out.data != source
    assert b"Exif" not in out.data
    _assert_no_metadata(out.data)
    _assert_no_metadata(out.thumbnail)
    img = _decoded(out.data)
    assert img.format == out.format.upper()
    assert out.content_type == f"image/{out.format}"
    assert (img.width, img.height) == (out.width, out.height)
    assert max(out.width, out.height) <= LIMITS.max_long_edge
    assert img.mode == ("RGBA" if out.format == "png" else "RGB")
    thumb = _decoded(out.thumbnail)
    assert out.thumbnail_content_type == f"image/{(thumb.format or '').lower()}"
    assert max(thumb.size) == min(320, max(out.width, out.height))


def test_gps_photo_loses_exif_gps_xmp_and_iptc() -> None:
    source = corpus_bytes("DSCN0010.jpg")
    assert b"Exif" in source and b"http://ns.adobe.com/xap" in source  # the sample really has them
    out = sanitize(source, LIMITS)
    assert (out.format, out.content_type, out.width, out.height) == ("jpeg", "image/jpeg", 640, 480)
    for needle in (b"Exif", b"GPS", b"http://ns.adobe.com/xap", b"Photoshop", b"NIKON"):
        assert needle not in out.data
    assert _jpeg_markers(out.data)[0] == 0xE0
    assert not _decoded(out.data).getexif()
    assert out.source_format == "jpeg" and not out.frames_dropped


def test_iptc_block_is_dropped() -> None:
    assert b"Photoshop 3.0" in corpus_bytes("iptc.jpg")
    out = _run("iptc.jpg")
    assert 0xED not in _jpeg_markers(out.data)  # APP13


@pytest.mark.parametrize("n", range(1, 9))
def test_exif_orientation_is_applied_before_stripping(n: int) -> None:
    upright = _decoded(_run("Landscape_1.jpg").data)
    out = _run(f"Landscape_{n}.jpg")
    img = _decoded(out.data)
    assert (out.width, out.height) == img.size == (1800, 1200)
    assert 0x0112 not in img.getexif()
    assert _mean_diff(img, upright) < 10  # a wrong rotation or mirror gives about 74


def test_orientation_survives_a_downscale_through_draft() -> None:
    limits = IntakeLimits(max_long_edge=600)
    upright = _decoded(_run("Landscape_1.jpg", limits).data)
    out = _run("Landscape_6.jpg", limits)
    assert (out.width, out.height) == (600, 400)
    assert _mean_diff(_decoded(out.data), upright) < 10


@pytest.mark.parametrize(
    ("name", "transpose"),
    [
        ("exif_imagemagick_orientation.png", Image.Transpose.ROTATE_180),  # tEXt raw exif profile
        ("xmp_tags_orientation.png", Image.Transpose.ROTATE_180),  # XMP tiff:Orientation only
        ("hopper_orientation_6.webp", Image.Transpose.ROTATE_270),  # EXIF chunk in WebP
    ],
)
def test_orientation_from_other_containers(name: str, transpose: Image.Transpose) -> None:
    stored = _as_srgb(_decoded(corpus_bytes(name)))
    out = _decoded(_run(name).data)
    right = _mean_diff(out, stored.transpose(transpose))
    assert right < 6
    assert right * 3 < _mean_diff(out, stored)


def test_container_rotation_of_avif_and_camera_rotation_are_applied() -> None:
    if "avif" in accepted_formats():
        out = _run("rot1mir0.avif")
        assert (out.width, out.height) == (640, 427)
    out = _run("canon_hdr_NO.jpg")
    assert (out.width, out.height) == (1536, 2048)


def test_unreadable_exif_means_no_rotation_not_an_error() -> None:
    pixels = _encoded(Image.new("RGB", (40, 20), (10, 200, 30)), "PNG")
    broken = pixels[:33] + _chunk(b"eXIf", b"garbage, not a TIFF header") + pixels[33:]
    with pytest.raises(SyntaxError):
        Image.open(io.BytesIO(broken)).getexif()  # the input really is unreadable for Pillow
    out = sanitize(broken, LIMITS)
    assert (out.width, out.height) == (40, 20)
    _assert_no_metadata(out.data)
    out = _run("hopper_bad_exif.jpg")  # Pillow warns "Corrupt EXIF data"
    assert (out.width, out.height) == (500, 500)


# --- colour ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif"])
def test_cmyk_becomes_rgb(name: str) -> None:
    source = _decoded(corpus_bytes(name))
    assert source.mode == "CMYK"
    out = _run(name)
    img = _decoded(out.data)
    assert img.mode == "RGB" and out.format == "jpeg"
    assert _mean_diff(img, source.convert("RGB")) < 10  # inverted CMYK would give about 240


def test_wide_gamut_photo_is_converted_to_srgb_and_its_profile_dropped() -> None:
    source = _decoded(corpus_bytes("xmp_test.jpg"))
    assert b"Adobe RGB" in source.info["icc_profile"]
    img = _decoded(_run("xmp_test.jpg").data)
    assert "icc_profile" not in img.info
    assert _mean_diff(img, _as_srgb(source)) < 4  # JPEG re-encoding noise only


def test_big_icc_profile_is_not_carried_over() -> None:
    out = _run("icc_profile_big.jpg")
    assert len(out.data) < 200_000
    assert 0xE2 not in _jpeg_markers(out.data)  # APP2 carries ICC


def test_icc_conversion_is_exact_and_keeps_alpha() -> None:
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


# --- alpha ----------------------------------------------------------------------------------------


def test_real_alpha_is_kept_in_png() -> None:
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
def test_palette_and_other_transparency_is_kept(name: str) -> None:
    img = _decoded(_run(name).data)
    assert img.mode == "RGBA"
    assert np.asarray(img)[..., 3].min() == 0


def test_fully_opaque_alpha_is_dropped() -> None:
    data = _encoded(Image.new("RGBA", (30, 30), (1, 2, 3, 255)), "PNG")
    out = sanitize(data, LIMITS)
    assert out.format == "jpeg" and _decoded(out.data).mode == "RGB"


# --- animations and multi-frame files -------------------------------------------------------------


@pytest.mark.parametrize("name", ["iss634.gif", "iss634.apng", "iss634.webp", "sugarshack.mpo"])
def test_multi_frame_files_become_a_still_on_purpose(name: str) -> None:
    out = _run(name)
    assert out.frames_dropped
    assert getattr(_decoded(out.data), "n_frames", 1) == 1


def test_still_images_do_not_report_dropped_frames() -> None:
    assert not _run("hopper.webp").frames_dropped
    assert not _run("transparent.gif").frames_dropped


def test_limits_only_allow_stills_for_now() -> None:
    with pytest.raises(ValueError):
        IntakeLimits(max_frames=2)
    with pytest.raises(ValueError):
        IntakeLimits(max_bytes=0)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", corpus_bytes("notjpeg.jpg")])
def test_empty_file(data: bytes) -> None:
    error = _refused(data)
    assert (error.code, error.status) == ("empty_file", 400)


def test_oversize_input_is_refused_before_opening(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "open", _must_not_open)
    error = _refused(corpus_bytes("DSCN0010.jpg"), IntakeLimits(max_bytes=100_000))
    assert (error.code, error.status) == ("too_large", 413)
    assert error.data["limit"] == "bytes" and error.data["maximum"] == 100_000


def _must_not_open(*args: object, **kwargs: object) -> Image.Image:
    raise AssertionError("Image.open must not see this file")


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
def test_unsupported_types_never_reach_pillow(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "open", _must_not_open)
    error = _refused(data)
    assert (error.code, error.status) == ("unsupported_type", 415)


def test_only_the_sniffed_plugin_runs() -> None:
    gif = _encoded(Image.new("P", (8, 8)), "GIF")
    error = _refused(b"\x89PNG\r\n\x1a\n" + gif)  # PNG magic, GIF body: not decoded as a GIF
    assert error.code == "corrupt_image"


def test_junk_between_jpeg_segments_is_accepted_and_not_carried_over() -> None:
    source = corpus_bytes("junk_jpeg_header.jpg")
    out = sanitize(source, LIMITS)
    assert (out.width, out.height) == (1024, 768)
    assert out.data != source


@pytest.mark.parametrize(
    "name", ["truncated_jpeg.jpg", "truncated_image.png", "shortfile.bmp", "broken_data_stream.png"]
)
def test_truncated_or_broken_pixel_data_is_corrupt(name: str) -> None:
    error = _refused(corpus_bytes(name))
    assert (error.code, error.status) == ("corrupt_image", 422)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_load_truncated_images_set_elsewhere_is_a_loud_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError):
        sanitize(corpus_bytes("truncated_jpeg.jpg"), LIMITS)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(corpus_bytes("decompression_bomb.gif"), id="gif-4-gigapixels"),
        pytest.param(corpus_bytes("reallybig.bmp"), id="bmp-6e12-pixels"),
        pytest.param(_one_bit_png(20_000), id="png-20000x20000-1bit"),
    ],
)
def test_decompression_bombs_are_refused_quickly(data: bytes) -> None:
    started = time.perf_counter()
    error = _refused(data)
    assert time.perf_counter() - started < 1.0
    assert (error.code, error.status) == ("dimensions_too_large", 422)
    assert error.data["limit"] in {"width", "height", "pixels"}
    assert isinstance(error.data["maximum"], int)


def test_png_text_chunk_bomb_is_refused_quickly() -> None:
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
def test_dimension_limits_are_checked_from_the_header(
    size: tuple[int, int], limit: str, maximum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile.ImageFile, "load", _must_not_load)
    error = _refused(_png_header_only(*size))
    assert (error.code, error.status) == ("dimensions_too_large", 422)
    assert (error.data["limit"], error.data["maximum"]) == (limit, maximum)
    assert str(maximum) in error.message


def _must_not_load(self: ImageFile.ImageFile) -> None:
    raise AssertionError("pixels must not be decoded")


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_raised_as_error_maps_to_the_same_refusal() -> None:
    error = _refused(_png_header_only(10_000, 10_000), IntakeLimits(max_pixels=200_000_000))
    assert (error.code, error.data["limit"]) == ("dimensions_too_large", "pixels")


def test_configured_limits_apply() -> None:
    error = _refused(corpus_bytes("DSCN0010.jpg"), IntakeLimits(max_width=600))
    assert (error.data["limit"], error.data["maximum"], error.data["actual"]) == ("width", 600, 640)


def test_out_of_memory_while_decoding_is_a_dimensions_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_memory(self: ImageFile.ImageFile) -> None:
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    assert _refused(corpus_bytes("hopper.bmp")).code == "dimensions_too_large"


def test_unexpected_decoder_errors_are_corrupt_image_not_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(self: ImageFile.ImageFile) -> None:
        raise KeyError("codec went sideways")

    monkeypatch.setattr(ImageFile.ImageFile, "load", explode)
    error = _refused(corpus_bytes("hopper.bmp"))
    assert (error.code, error.status) == ("corrupt_image", 422)


# --- HEIC -----------------------------------------------------------------------------------------


def test_heic_with_gps_is_converted_without_it() -> None:
    source = corpus_bytes("xiaomi.heic")
    if "heif" not in accepted_formats():
        assert _refused(source).code == "unsupported_type"
        return
    out = sanitize(source, LIMITS)
    assert (out.format, out.source_format) == ("jpeg", "heif")
    assert (out.width, out.height) == (2048, 1536)
    assert b"Exif" not in out.data and b"Xiaomi" not in out.data
    _assert_no_metadata(out.data)


# --- output bytes and size ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["transparent.png", "hopper.webp"])
def test_reuploading_our_own_output_still_changes_the_bytes(name: str) -> None:
    first = _run(name)
    second = sanitize(first.data, LIMITS)
    assert second.data != first.data
    assert second.format == first.format


def test_large_photo_is_capped_with_a_thumbnail(photo_12mp: bytes) -> None:
    started = time.perf_counter()
    out = sanitize(photo_12mp, LIMITS)
    assert time.perf_counter() - started < 5.0
    assert (out.width, out.height) == (2048, 1536)
    assert _decoded(out.thumbnail).size == (320, 240)
    assert out.thumbnail_content_type == "image/jpeg"
    assert len(out.data) < len(photo_12mp)
