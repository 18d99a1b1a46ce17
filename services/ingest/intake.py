"""Turn uploaded bytes into a clean, re-encoded image: the heart of uploads.

``sanitize`` runs, in this order: watermark text check; empty and byte-size checks; type from the
magic bytes against an allow-list (never the name or the client's Content-Type); container headers
read from the bytes (GIF blocks, PNG/APNG chunks, WebP chunks: sizes checked and frames counted
lazily against the limits; JPEG segments and scans counted; HEIF/AVIF item locations inside the
file - all before any pixel is decoded, see ``intake_probe``); ``Image.open``
restricted to that one Pillow plugin (so EPS/Ghostscript and friends never run); width/height/pixel
limits from the header; a full decode (truncated files are refused, never patched up), shrunk
while decoding where the codec allows it (``intake_pixels``); 16-bit samples scaled to 8 bits;
alpha kept only when some pixel is not opaque; colours converted to sRGB through the embedded ICC
profile; EXIF/XMP/container orientation applied. The result is re-encoded from fresh pixels with
no metadata (no EXIF, GPS, XMP, IPTC, ICC, comments or text chunks), plus a still thumbnail.

Stills become JPEG (PNG when there is real alpha). Animations (GIF, APNG, animated WebP, AVIF
sequences) keep every frame, their durations and loop count, as an animated WebP
(``intake_frames``).
MPO, multi-page TIFF and multi-image HEIF keep their first (primary) image on purpose;
``SanitizedImage.frames_dropped`` says when that happened.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image, ImageFile, features

from services.ingest.intake_frames import (
    AnimatedWebp,
    gif_first_frame,
    gif_frames,
    gif_loop_for_webp,
    pillow_frames,
    webp_method,
)
from services.ingest.intake_limits import (
    IntakeLimits,
    check_dimensions,
    check_frames,
    pillow_errors,
)
from services.ingest.intake_pixels import (
    ToSrgb,
    detached,
    draft_jpeg,
    encode_still,
    jpeg_source_quality,
    orientation,
    shrink,
    thumbnail,
    to_8bit,
    upright,
)
from services.ingest.intake_probe import (
    Header,
    check_heif_items,
    read_gif,
    read_jpeg_scans,
    read_png,
    read_webp,
)
from services.ingest.intake_watermark import Watermark, check_watermark
from services.shared.errors import IntakeError

__all__ = ["IntakeLimits", "SanitizedImage", "accepted_formats", "sanitize", "sniff_format"]

SNIFF_BYTES = 128

_PILLOW_FORMAT = {
    "jpeg": "JPEG",  # Pillow's JPEG opener also returns MPO files (first frame kept)
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "heif": "HEIF",  # registered by pillow-heif
    "avif": "AVIF",  # Pillow's own plugin, when built with libavif
}
_FIRST_FRAME_ONLY = frozenset({"jpeg", "tiff", "heif"})  # MPO, multi-page TIFF, HEIF collections
_ANIMATED = frozenset({"png", "webp", "avif"})  # through Pillow's frames; GIF is composited here
_CONTENT_TYPE = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_TIFF_MAGIC = frozenset({b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"})
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

Frames = Iterator[tuple[Image.Image, int]]


@dataclass(frozen=True)
class SanitizedImage:
    data: bytes
    content_type: str
    format: str  # "jpeg" | "png" | "webp" (animations)
    width: int
    height: int
    source_format: str  # as sniffed: "jpeg" (incl. MPO), "png", "webp", "gif", "heif", ...
    thumbnail: bytes  # always a still (first frame), never watermarked
    thumbnail_content_type: str
    animated: bool = False
    frames: int = 1  # frames in ``data``
    frames_dropped: bool = False  # MPO / multi-page TIFF / HEIF collection: first image kept


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


def sanitize(data: bytes, limits: IntakeLimits, watermark: str | None = None) -> SanitizedImage:
    """Validate an upload and re-encode it with no metadata, or raise IntakeError (4xx).

    ``watermark``: optional text (1-40 printable characters) drawn on the served image, on every
    frame of an animation; never on the thumbnail.
    """
    text = check_watermark(watermark)
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
    with pillow_errors(limits):
        return _Intake(data, source_format, limits, text).run()


class _Intake:
    """One upload on its way through: decode, normalise, encode."""

    def __init__(
        self, data: bytes, source_format: str, limits: IntakeLimits, text: str | None
    ) -> None:
        self.data = data
        self.source_format = source_format
        self.limits = limits
        self.text = text

    def run(self) -> SanitizedImage:
        data, source_format, limits = self.data, self.source_format, self.limits
        if source_format == "gif":
            layout = read_gif(data, limits)
            if len(layout.frames) > 1:
                loop = gif_loop_for_webp(layout.loop)
                return self._animation(lambda: gif_frames(data, layout), len(layout.frames), loop)
            return self._still(self._normalise(gif_first_frame(data, layout), 1, None))
        header = None
        if source_format == "jpeg":
            read_jpeg_scans(data)
        elif source_format == "png":
            header = read_png(data, limits)
        elif source_format == "webp":
            header = read_webp(data, limits)
        elif source_format in ("heif", "avif"):
            check_heif_items(data)
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[source_format]]) as im:
            check_dimensions(im.size, limits)
            first, count = self._frames(im, header)
            if count > 1:
                return self._animation(
                    lambda: pillow_frames(im, first, count),
                    count,
                    header.loop if header else 0,  # AVIF: Pillow does not expose it; forever
                    orientation(im),
                    im.info.get("icc_profile"),
                )
            return self._decode_still(im)

    def _frames(self, im: Image.Image, header: Header | None) -> tuple[int, int]:
        """(first, count) of the animation frames to keep; count 1 for stills."""
        if self.source_format not in _ANIMATED or (header is not None and header.frames <= 1):
            return 0, 1
        total = getattr(im, "n_frames", 1)  # from the headers (acTL, ANMF chunks, AVIF tracks)
        first = 1 if getattr(im, "default_image", False) else 0  # APNG image outside the animation
        count = total - first if isinstance(total, int) else 1
        check_frames(count, im.size, self.limits)
        return first, max(count, 1)

    def _decode_still(self, im: ImageFile.ImageFile) -> SanitizedImage:
        cap = self.limits.max_long_edge
        # is_animated, not n_frames: TIFF's n_frames walks every IFD (quadratic in Pillow 13), and
        # a 7 MB chain of IFDs took 31 s.
        dropped = self.source_format in _FIRST_FRAME_ONLY and bool(getattr(im, "is_animated", 0))
        quality = None
        if self.source_format == "jpeg":
            quality = jpeg_source_quality(im)
            if max(im.size) > cap:
                draft_jpeg(im, cap)  # DCT scaling: 1/2, 1/4 or 1/8 of the work
        im.load()
        check_dimensions(im.size, self.limits)  # some decoders only know the real size now
        img = self._normalise(im, orientation(im), im.info.get("icc_profile"))
        return self._still(img, quality, frames_dropped=dropped)

    def _normalise(self, im: Image.Image, exif_orientation: int, icc: object) -> Image.Image:
        img = shrink(to_8bit(im), self.limits.max_long_edge)
        img = ToSrgb(icc, img.mode)(img)
        return detached(upright(img, exif_orientation))

    def _still(
        self, img: Image.Image, source_quality: int | None = None, *, frames_dropped: bool = False
    ) -> SanitizedImage:
        quality = min(self.limits.jpeg_quality, source_quality or 100)
        thumb, thumb_format = thumbnail(img, quality)
        if self.text:
            Watermark(self.text, img.size).draw_on(img)
        data, out_format = encode_still(img, quality)
        if source_quality is not None:
            # Re-encoding a JPEG at its own quality can come out a little larger than it was:
            # step the quality down (twice at most) so a photo never grows by passing through.
            for lower in (quality - 4, quality - 8):
                if len(data) <= len(self.data) or lower < 1:
                    break
                data, out_format = encode_still(img, lower)
        if data == self.data:  # a re-upload of our own output: change the encoding, never echo
            data, out_format = encode_still(img, quality, alternate=True)
        return SanitizedImage(
            data=data,
            content_type=_CONTENT_TYPE[out_format],
            format=out_format,
            width=img.width,
            height=img.height,
            source_format=self.source_format,
            thumbnail=thumb,
            thumbnail_content_type=_CONTENT_TYPE[thumb_format],
            frames_dropped=frames_dropped,
        )

    def _animation(
        self,
        frames: Callable[[], Frames],
        count: int,
        loop: int,
        exif_orientation: int = 1,
        icc: object = None,
    ) -> SanitizedImage:
        result = self._encode_animation(frames(), count, loop, exif_orientation, icc, False)
        if result.data == self.data:
            result = self._encode_animation(frames(), count, loop, exif_orientation, icc, True)
        return result

    def _encode_animation(
        self,
        frames: Frames,
        count: int,
        loop: int,
        exif_orientation: int,
        icc: object,
        alternate: bool,
    ) -> SanitizedImage:
        limits = self.limits
        to_srgb = ToSrgb(icc, "RGBA")
        encoder: AnimatedWebp | None = None
        mark: Watermark | None = None
        thumb, thumb_format = b"", "jpeg"
        for frame, duration in frames:
            img = detached(upright(to_srgb(shrink(frame, limits.max_long_edge)), exif_orientation))
            if encoder is None:
                thumb, thumb_format = thumbnail(to_8bit(img), limits.jpeg_quality)
                mark = Watermark(self.text, img.size) if self.text else None
                quality = limits.webp_quality - 1 if alternate else limits.webp_quality
                method = webp_method(count * img.width * img.height)
                encoder = AnimatedWebp(
                    img.size, loop=loop, quality=quality, method=method, mixed=not alternate
                )
            if mark is not None:
                mark.draw_on(img)
            encoder.add(img, duration)
        if encoder is None:
            raise IntakeError("The animation has no frames.", code="corrupt_image", status=422)
        data = encoder.finish()
        # libwebp merges a frame identical to the one before into it (durations add up): report
        # the frames actually in the output.
        kept = read_webp(data, limits).frames
        width, height = encoder.size
        return SanitizedImage(
            data=data,
            content_type="image/webp",
            format="webp",
            width=width,
            height=height,
            source_format=self.source_format,
            thumbnail=thumb,
            thumbnail_content_type=_CONTENT_TYPE[thumb_format],
            animated=kept > 1,
            frames=kept,
        )
