"""Turn uploaded bytes into a clean, re-encoded still image: the heart of uploads.

``sanitize`` runs, in this order: empty and byte-size checks; type from the magic bytes against an
allow-list (never the name or the client's Content-Type); ``Image.open`` restricted to that one
Pillow plugin (so EPS/Ghostscript and friends never run); width/height/pixel limits from the header
before any pixel is decoded; a full decode (truncated files are refused, never patched up); 16-bit
samples scaled to 8 bits; alpha kept only when some pixel is not opaque; the long edge capped;
colours converted to sRGB through the embedded ICC profile; EXIF/XMP orientation applied. The
result is re-encoded from fresh pixels with no metadata (no EXIF, GPS, XMP, IPTC, ICC, comments or
text chunks), plus a small thumbnail.

Animations (GIF, APNG, animated WebP/AVIF, MPO, multi-page TIFF) become a still of their first frame
on purpose in this first cut; ``SanitizedImage.frames_dropped`` says when that happened.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile, features

from services.shared.errors import IntakeError

log = logging.getLogger(__name__)

THUMBNAIL_EDGE = 320
THUMBNAIL_WEBP_QUALITY = 80
SNIFF_BYTES = 128

_PILLOW_FORMAT = {
    "jpeg": "JPEG",  # Pillow's JPEG opener also returns MPO files (still JPEG on the first frame)
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "heif": "HEIF",  # registered by pillow-heif
    "avif": "AVIF",  # Pillow's own plugin, when built with libavif
}
_CONTENT_TYPE = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_TIFF_MAGIC = frozenset({b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"})
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_width: int = 12000
    max_height: int = 12000
    max_pixels: int = 50_000_000
    max_frames: int = 1  # this first cut makes a still of animations on purpose (first frame)
    max_long_edge: int = 2048  # output cap
    jpeg_quality: int = 82

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"IntakeLimits.{field.name} must be positive")
        if self.max_frames != 1:
            raise ValueError("only stills are produced for now: max_frames must be 1")
        if self.jpeg_quality > 95:
            raise ValueError("IntakeLimits.jpeg_quality must be at most 95")


@dataclass(frozen=True)
class SanitizedImage:
    data: bytes
    content_type: str
    format: str  # "jpeg" | "png" | "webp"
    width: int
    height: int
    source_format: str  # as sniffed: "jpeg" (incl. MPO), "png", "webp", "gif", "heif", ...
    thumbnail: bytes
    thumbnail_content_type: str
    frames_dropped: bool = False  # the source had more frames than the still we kept


def sniff_format(head: bytes) -> str | None:
    """The image format named by the magic bytes at the start of a file, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    """HEIF or AVIF from the ISO-BMFF ``ftyp`` box: major brand, then compatible brands."""
    major = head[8:12]
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    compatible = {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIF_BRANDS:
        return "heif"
    if major in _GENERIC_HEIF_BRANDS:
        return "avif" if compatible & _AVIF_BRANDS else "heif"
    return None


@functools.cache
def accepted_formats() -> frozenset[str]:
    """Sniffed formats this process can decode (HEIF and AVIF depend on optional codecs)."""
    accepted = {"jpeg", "png", "webp", "gif", "tiff", "bmp"}
    if _register_heif():
        accepted.add("heif")
    if features.check("avif"):
        accepted.add("avif")
    return frozenset(accepted)


def _register_heif() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def sanitize(data: bytes, limits: IntakeLimits) -> SanitizedImage:
    """Validate an upload and re-encode it with no metadata, or raise IntakeError (4xx)."""
    if not data:
        raise IntakeError("The file is empty.", code="empty_file", status=400)
    if len(data) > limits.max_bytes:
        raise IntakeError(
            f"The file is larger than {limits.max_bytes} bytes.",
            code="too_large",
            status=413,
            limit="bytes",
            maximum=limits.max_bytes,
        )
    source_format = sniff_format(data[:SNIFF_BYTES])
    if source_format not in accepted_formats():
        names = ", ".join(sorted(accepted_formats())).upper()
        raise IntakeError(
            f"This file type is not accepted; send one of: {names}.",
            code="unsupported_type",
            status=415,
        )
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated files would pass")
    with _pillow_errors(limits):
        still, frames_dropped = _decode(data, source_format, limits)
    data_out, out_format = _encode(still, limits.jpeg_quality)
    if data_out == data:  # a re-upload of our own output: change the encoding, never echo bytes
        data_out, out_format = _encode(still, limits.jpeg_quality, alternate=True)
    thumbnail, thumbnail_format = _thumbnail(still, limits.jpeg_quality)
    return SanitizedImage(
        data=data_out,
        content_type=_CONTENT_TYPE[out_format],
        format=out_format,
        width=still.width,
        height=still.height,
        source_format=source_format,
        thumbnail=thumbnail,
        thumbnail_content_type=_CONTENT_TYPE[thumbnail_format],
        frames_dropped=frames_dropped,
    )


@contextmanager
def _pillow_errors(limits: IntakeLimits) -> Iterator[None]:
    """Map anything Pillow or a codec raises while decoding to a 4xx IntakeError."""
    try:
        yield
    except IntakeError:
        raise
    except MemoryError as exc:
        log.warning("out of memory while decoding an upload; refused as too large")
        raise _too_many_pixels(limits) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(limits) from exc
    except Exception as exc:
        # Only the type: Pillow's messages can quote bytes of the upload.
        log.info("upload failed to decode: %s", type(exc).__name__)
        raise IntakeError(
            "The image could not be decoded: it is corrupt, truncated or malformed.",
            code="corrupt_image",
            status=422,
        ) from exc


def _too_many_pixels(limits: IntakeLimits) -> IntakeError:
    return _dimension_error("pixels", None, limits.max_pixels)


_TOO_LARGE_PHRASE = {
    "width": "wider than {} pixels",
    "height": "taller than {} pixels",
    "pixels": "larger than {} pixels in total",
}


def _dimension_error(limit: str, actual: int | None, maximum: int) -> IntakeError:
    return IntakeError(
        f"The image is {_TOO_LARGE_PHRASE[limit].format(maximum)}.",
        code="dimensions_too_large",
        status=422,
        limit=limit,
        maximum=maximum,
        actual=actual,
    )


def _check_dimensions(size: tuple[int, int], limits: IntakeLimits) -> None:
    width, height = size
    if width > limits.max_width:
        raise _dimension_error("width", width, limits.max_width)
    if height > limits.max_height:
        raise _dimension_error("height", height, limits.max_height)
    if width * height > limits.max_pixels:
        raise _dimension_error("pixels", width * height, limits.max_pixels)


def _decode(data: bytes, source_format: str, limits: IntakeLimits) -> tuple[Image.Image, bool]:
    """Decode the first frame into an upright, sRGB, size-capped RGB/RGBA image with no info."""
    formats = [_PILLOW_FORMAT[source_format]]
    with Image.open(io.BytesIO(data), formats=formats) as im:
        _check_dimensions(im.size, limits)
        frames_dropped = bool(getattr(im, "is_animated", False))
        if source_format == "jpeg" and max(im.size) > limits.max_long_edge:
            # DCT scaling: almost free when the cap is at most 1/2 of the source, else a no-op.
            im.draft(None, _fit(im.size, limits.max_long_edge))
        im.load()
        _check_dimensions(im.size, limits)  # some decoders only know the real size now
        orientation = _orientation(im)
        icc = im.info.get("icc_profile")
        img = _to_8bit(im)
        target = _fit(img.size, limits.max_long_edge)
        if img.size != target:
            img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        img = _to_srgb(img, icc if isinstance(icc, bytes) else None)
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        # Fresh pixels: a new image that shares nothing (info, exif, palette) with the upload.
        return Image.frombytes(img.mode, img.size, img.tobytes()), frames_dropped


def _fit(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    width, height = size
    longest = max(width, height)
    if longest <= long_edge:
        return size
    scale = long_edge / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation; unreadable metadata means no rotation, never an error."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation)
    except MemoryError:
        raise
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _to_8bit(im: Image.Image) -> Image.Image:
    """An 8-bit RGB, RGBA or CMYK image; alpha only if some pixel is not fully opaque."""
    if im.mode in _SIXTEEN_BIT_GREY or im.mode in ("I", "F"):
        im = _grey_to_8bit(im)
    if im.mode == "CMYK":
        return im
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return im if im.mode == "RGB" else im.convert("RGB")
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    lowest_alpha = int(np.asarray(rgba.getchannel("A")).min())
    return rgba if lowest_alpha < 255 else rgba.convert("RGB")


def _grey_to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit (I;16*, and I taken as 16-bit) or float (0..1) grey samples to 0..255."""
    samples = np.asarray(im, dtype=np.float64)
    full_scale = 1.0 if im.mode == "F" else 65535.0
    eight_bit = np.rint(np.clip(samples, 0.0, full_scale) * (255.0 / full_scale))
    return Image.fromarray(eight_bit.astype(np.uint8))


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert through the embedded profile; a missing or unusable profile means sRGB already."""
    if icc:
        try:
            converted = _apply_profile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)))
        except MemoryError:
            raise
        except Exception as exc:
            log.info("unusable ICC profile, assuming sRGB: %s", type(exc).__name__)
            converted = None
        if converted is not None:
            return converted
    return img.convert("RGB") if img.mode == "CMYK" else img


def _apply_profile(img: Image.Image, source: ImageCms.ImageCmsProfile) -> Image.Image | None:
    space = source.profile.xcolor_space.strip()
    description = source.profile.profile_description or ""
    if img.mode == "CMYK" and space == "CMYK":
        return ImageCms.profileToProfile(img, source, _srgb_profile(), outputMode="RGB")
    if img.mode in ("RGB", "RGBA") and space == "RGB" and not description.startswith("sRGB"):
        return ImageCms.profileToProfile(img, source, _srgb_profile(), outputMode=img.mode)
    return None


def _encode(img: Image.Image, quality: int, *, alternate: bool = False) -> tuple[bytes, str]:
    """PNG when there is alpha, else JPEG; ``alternate`` changes the bytes, not the pixels."""
    buffer = io.BytesIO()
    if img.mode == "RGBA":
        img.save(buffer, "PNG", compress_level=9 if alternate else 6)
        return buffer.getvalue(), "png"
    if alternate:
        quality = quality - 1 if quality > 1 else quality + 1
    img.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
    return buffer.getvalue(), "jpeg"


def _thumbnail(img: Image.Image, quality: int) -> tuple[bytes, str]:
    """Long edge THUMBNAIL_EDGE; JPEG, or WebP when there is alpha; made from the fresh pixels."""
    thumb = img.copy()
    thumb.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if thumb.mode == "RGBA":
        thumb.save(buffer, "WEBP", quality=THUMBNAIL_WEBP_QUALITY, method=4)
        return buffer.getvalue(), "webp"
    thumb.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), "jpeg"
