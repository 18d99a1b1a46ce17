"""Pixel steps shared by stills and animation frames (part of ``services.ingest.intake``).

Shrinking rule (``shrink_factor``). The long-edge cap is a maximum, not a target: an output a little
under the cap is as good as one exactly at it, and far cheaper when it comes from an integer
reduction. Given the factors a decoder or ``Image.reduce`` offers (JPEG DCT scaling: 1/2, 1/4,
1/8; ``reduce()``: any integer), pick the smallest factor whose result lies between
``KEEP_AT_LEAST`` x cap and the cap, and stop there: no Lanczos pass at all. A 4000-px photo with
cap 2048 decodes at 1/2 scale (2000 px) and is done. When no factor lands in that band, take the
largest factor that still leaves the image above the cap and finish with one resize from there
(a ratio under 1.8, and under 1.35 once a factor of 2 or more was used; ``FINAL_FILTER``).
Examples with cap 2048: 4000 px JPEG -> DCT 1/2 = 2000, done; 4032x3024 HEIC -> reduce(2) = 2016,
done; 2592 px HEIC -> resize to 2048; 6000 px JPEG -> DCT 1/2 = 3000 -> resize to 2048; 6000 px
PNG -> reduce(3) = 2000, done. Thumbnails follow the same rule with their own edge.
"""

from __future__ import annotations

import functools
import io
import logging

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile

log = logging.getLogger(__name__)

KEEP_AT_LEAST = 0.9  # an integer reduction may land this far under the long-edge cap
# The final resize covers a ratio under 1.8 (see shrink_factor). There, Pillow's bicubic costs
# ~35% less than Lanczos and, after the JPEG q82 encode, is within 0.05 dB PSNR of it against a
# float Lanczos reference (87_OSError.jpg 2240->2048: 41.33 vs 41.38 dB; xiaomi.heic 2592->2048:
# 41.72 vs 41.76 dB), with 2-3% fewer bytes.
FINAL_FILTER = Image.Resampling.BICUBIC
CACHED_PROFILE_BYTES = 512 * 1024
JPEG_DCT_FACTORS = (1, 2, 4, 8)
# Huffman optimisation: 1-6% fewer bytes for ~2x the encode time (+10-15 ms at 2-3 MP) - kept,
# so same-size outputs come out smaller than libvips' default (non-optimised) ones. Progressive
# saves ~4% more but costs ~2.5x the time of baseline+optimize: not used.
JPEG_OPTIMIZE = True
JPEG_PROGRESSIVE = False
THUMBNAIL_EDGE = 320
THUMBNAIL_WEBP_QUALITY = 80

SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# IJG (libjpeg) reference luminance quantisation table, natural order (JPEG spec, Annex K.1).
_IJG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_IJG_LUMA_SUM = sum(sum(row) for row in _IJG_LUMA)


def fit(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    width, height = size
    longest = max(width, height)
    if longest <= long_edge:
        return size
    scale = long_edge / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink_factor(long_edge: int, cap: int, factors: tuple[int, ...] | None = None) -> int:
    """The integer reduction to apply first (see the module docstring); ``None``: any integer."""
    if long_edge <= cap:
        return 1
    if factors is None:
        factors = tuple(range(1, long_edge // max(1, int(KEEP_AT_LEAST * cap)) + 2))
    reduced = {factor: -(-long_edge // factor) for factor in factors}  # ceil, as decoders do
    in_band = [f for f, edge in reduced.items() if KEEP_AT_LEAST * cap <= edge <= cap]
    if in_band:
        return min(in_band)
    return max(f for f, edge in reduced.items() if edge > cap)


def shrink(img: Image.Image, cap: int) -> Image.Image:
    """Box ``reduce()`` by the chosen factor, then one final resize only if still above the cap."""
    factor = shrink_factor(max(img.size), cap)
    if factor > 1:
        img = img.reduce(factor)
    if max(img.size) > cap:
        img = img.resize(fit(img.size, cap), FINAL_FILTER)
    return img


def draft_jpeg(im: ImageFile.ImageFile, cap: int) -> None:
    """Ask libjpeg for a DCT-scaled decode (1/2, 1/4, 1/8) chosen by ``shrink_factor``."""
    factor = shrink_factor(max(im.size), cap, JPEG_DCT_FACTORS)
    if factor > 1:
        im.draft(None, (im.width // factor, im.height // factor))


def jpeg_source_quality(im: Image.Image) -> int | None:
    """IJG-equivalent quality of a JPEG upload, from its luminance quantisation table.

    Re-encoding above the source's quality only spends bytes on its compression artefacts, so
    the output quality is capped by this estimate.
    """
    tables = getattr(im, "quantization", None)
    table = tables.get(0) if isinstance(tables, dict) else None
    if table is None or len(table) != 64:
        return None
    scale = 100.0 * float(sum(table)) / _IJG_LUMA_SUM  # libjpeg's quality scaling, in percent
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))


def orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation; unreadable metadata means no rotation, never an error."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation)
    except MemoryError:
        raise
    except Exception:
        return 1
    return value if isinstance(value, int) and value in TRANSPOSE else 1


def to_8bit(im: Image.Image) -> Image.Image:
    """An 8-bit L, RGB, RGBA or CMYK image; alpha only if some pixel is not fully opaque."""
    if im.mode in SIXTEEN_BIT_GREY or im.mode in ("I", "F"):
        im = _grey_to_8bit(im)
    if im.mode in ("L", "RGB", "CMYK") and "transparency" not in im.info:
        return im
    if im.mode not in ALPHA_MODES and "transparency" not in im.info:
        return im.convert("RGB")
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    lowest_alpha = rgba.getchannel("A").getextrema()[0]
    return rgba if isinstance(lowest_alpha, int) and lowest_alpha < 255 else rgba.convert("RGB")


def _grey_to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit (I;16*, and I taken as 16-bit) or float (0..1) grey samples to 0..255.

    In place on one float64 copy: a 50 MP image costs 400 MB here, not 1.2 GB (a 350 KB
    16-bit PNG of 7071x7071 grew the process by 1.2 GiB with a temporary per step)."""
    samples = np.array(im, dtype=np.float64)  # always a fresh, writable copy
    full_scale = 1.0 if im.mode == "F" else 65535.0
    np.clip(samples, 0.0, full_scale, out=samples)
    samples *= 255.0 / full_scale
    np.rint(samples, out=samples)
    return Image.fromarray(samples.astype(np.uint8))


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ToSrgb:
    """Converts images of one mode to sRGB RGB/RGBA (grey stays grey) through an ICC profile.

    A missing, sRGB-described or unusable profile means the pixels are taken as sRGB already.
    Transforms of profiles up to CACHED_PROFILE_BYTES are cached (building one costs ~5 ms,
    ~60 ms for the 400 KB profile of icc_profile_big.jpg, and phones send the same few profiles
    again and again; the cache holds at most 16 x 512 KB of profile bytes). A LittleCMS
    transform only reads its own state while converting, so threads can share one.
    """

    def __init__(self, icc: object, mode: str) -> None:
        self._transform: ImageCms.ImageCmsTransform | None = None
        if isinstance(icc, bytes) and icc and mode in ("RGB", "RGBA", "CMYK"):
            cacheable = len(icc) <= CACHED_PROFILE_BYTES
            self._transform = (_cached_transform if cacheable else _transform)(icc, mode)

    def __call__(self, img: Image.Image) -> Image.Image:
        if self._transform is not None and img.mode == self._transform.input_mode:
            converted = ImageCms.applyTransform(img, self._transform)
            if converted is not None:
                return converted
        return img if img.mode in ("RGB", "RGBA", "L") else img.convert("RGB")


def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The profile -> sRGB transform, or None when none is needed or the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = source.profile.xcolor_space.strip()
        description = source.profile.profile_description or ""
        if space == "CMYK" and mode == "CMYK":
            out_mode = "RGB"
        elif space == "RGB" and mode != "CMYK" and not description.startswith("sRGB"):
            out_mode = mode
        else:
            return None
        return ImageCms.buildTransform(source, _srgb_profile(), mode, out_mode)
    except MemoryError:
        raise
    except Exception as exc:
        log.info("unusable ICC profile, assuming sRGB: %s", type(exc).__name__)
        return None


_cached_transform = functools.lru_cache(maxsize=16)(_transform)


def upright(img: Image.Image, exif_orientation: int) -> Image.Image:
    return img.transpose(TRANSPOSE[exif_orientation]) if exif_orientation in TRANSPOSE else img


def detached(img: Image.Image) -> Image.Image:
    """The image with no ``info`` (comments, profiles, EXIF, transparency) left from the upload.

    Pillow's encoders take metadata only from ``info`` and from explicit save() arguments (which
    we never pass), so this is enough; no pixel copy is needed even when nothing else changed
    the decoder's own image.
    """
    img.info = {}
    return img


def encode_still(img: Image.Image, quality: int, *, alternate: bool = False) -> tuple[bytes, str]:
    """PNG when there is alpha, else JPEG (RGB, or grey for grey sources); ``alternate`` changes
    the bytes, not the pixels."""
    buffer = io.BytesIO()
    if img.mode == "RGBA":
        img.save(buffer, "PNG", compress_level=9 if alternate else 6)
        return buffer.getvalue(), "png"
    if alternate:
        quality = quality - 1 if quality > 1 else quality + 1
    img.save(buffer, "JPEG", quality=quality, optimize=JPEG_OPTIMIZE, progressive=JPEG_PROGRESSIVE)
    return buffer.getvalue(), "jpeg"


def thumbnail(img: Image.Image, quality: int) -> tuple[bytes, str]:
    """Long edge up to THUMBNAIL_EDGE; JPEG, or WebP when there is alpha; never watermarked."""
    thumb = shrink(img, THUMBNAIL_EDGE)
    buffer = io.BytesIO()
    if thumb.mode == "RGBA":
        thumb.save(buffer, "WEBP", quality=THUMBNAIL_WEBP_QUALITY, method=4)
        return buffer.getvalue(), "webp"
    thumb.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), "jpeg"
