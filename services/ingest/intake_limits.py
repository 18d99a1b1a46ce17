"""Intake limits and the 4xx refusals built from them (part of ``services.ingest.intake``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

from PIL import Image

from services.shared.errors import IntakeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_width: int = 12000  # per frame and for an animation's canvas
    max_height: int = 12000
    max_pixels: int = 50_000_000  # one frame (width x height)
    max_frames: int = 300  # animations; checked from the container headers before decoding
    max_total_pixels: int = 500_000_000  # frames x canvas width x canvas height
    max_long_edge: int = 2048  # output cap (a maximum: see intake_pixels.shrink_factor)
    jpeg_quality: int = 82  # stills; never above the quality of a JPEG upload
    webp_quality: int = 80  # animations (lossy frames; lossless where that is smaller)

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"IntakeLimits.{field.name} must be positive")
        if self.jpeg_quality > 95:
            raise ValueError("IntakeLimits.jpeg_quality must be at most 95")
        if self.webp_quality > 100:
            raise ValueError("IntakeLimits.webp_quality must be at most 100")


def corrupt_image() -> IntakeError:
    return IntakeError(
        "The image could not be decoded: it is corrupt, truncated or malformed.",
        code="corrupt_image",
        status=422,
    )


_TOO_LARGE_PHRASE = {
    "width": "wider than {} pixels",
    "height": "taller than {} pixels",
    "pixels": "larger than {} pixels in total",
}


def dimension_error(limit: str, actual: int | None, maximum: int) -> IntakeError:
    return IntakeError(
        f"The image is {_TOO_LARGE_PHRASE[limit].format(maximum)}.",
        code="dimensions_too_large",
        status=422,
        limit=limit,
        maximum=maximum,
        actual=actual,
    )


def check_dimensions(size: tuple[int, int], limits: IntakeLimits) -> None:
    width, height = size
    if width > limits.max_width:
        raise dimension_error("width", width, limits.max_width)
    if height > limits.max_height:
        raise dimension_error("height", height, limits.max_height)
    if width * height > limits.max_pixels:
        raise dimension_error("pixels", width * height, limits.max_pixels)


def check_frames(frames: int, canvas: tuple[int, int], limits: IntakeLimits) -> None:
    """Raise once ``frames`` (counted so far, or declared) is over a limit: call it per frame."""
    if frames > limits.max_frames:
        raise IntakeError(
            f"The animation has more than {limits.max_frames} frames.",
            code="too_many_frames",
            status=422,
            limit="frames",
            maximum=limits.max_frames,
        )
    total = frames * canvas[0] * canvas[1]
    if total > limits.max_total_pixels:
        raise IntakeError(
            f"The animation is larger than {limits.max_total_pixels} pixels over all its frames.",
            code="too_many_frames",
            status=422,
            limit="total_pixels",
            maximum=limits.max_total_pixels,
        )


@contextmanager
def pillow_errors(limits: IntakeLimits) -> Iterator[None]:
    """Map anything Pillow or a codec raises while decoding or encoding to a 4xx IntakeError."""
    try:
        yield
    except IntakeError:
        raise
    except MemoryError as exc:
        log.warning("out of memory while decoding an upload; refused as too large")
        raise dimension_error("pixels", None, limits.max_pixels) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise dimension_error("pixels", None, limits.max_pixels) from exc
    except Exception as exc:
        # Only the type: Pillow's messages can quote bytes of the upload.
        log.info("upload failed to decode: %s", type(exc).__name__)
        raise corrupt_image() from exc
