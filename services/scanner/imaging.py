"""Decode uploaded bytes into normalised RGB images for hashing and scoring.

Only JPEG, PNG, WebP and GIF are opened. Orientation from EXIF/XMP is applied when it can be
read (any error reading it means "no rotation"), transparency is flattened onto a fixed white
background so that pixels hidden under alpha 0 can never change a hash or a score.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
BACKGROUND: tuple[int, int, int] = (255, 255, 255)

_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _open(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image dimensions too large: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"undecodable image: {exc}") from exc
    return img


def _load(img: Image.Image) -> None:
    try:
        img.load()
    except Exception as exc:
        raise ValueError(f"undecodable image: {exc}") from exc


def _oriented(img: Image.Image) -> Image.Image:
    """Apply EXIF/XMP orientation; unreadable metadata means no rotation."""
    try:
        out = ImageOps.exif_transpose(img)
    except Exception:
        return img
    return out if out is not None else img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Return an RGB copy with any alpha or palette transparency composited onto white."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        # A plain convert() clips 16-bit samples; scale them into 0..255 instead.
        arr = np.asarray(img, dtype=np.float64)
        eight = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.info.get("transparency") is not None and mode in ("P", "L", "RGB", "1")
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if mode == "RGB":
        return img.copy()
    return img.convert("RGB")


def _frame_count(img: Image.Image) -> int:
    n = getattr(img, "n_frames", 1)
    return n if isinstance(n, int) and n > 0 else 1


def _frame_indices(n_frames: int, max_frames: int) -> list[int]:
    if n_frames <= 1 or max_frames <= 1:
        return [0]
    k = min(n_frames, max_frames)
    picks = np.rint(np.linspace(0, n_frames - 1, k)).astype(int)
    return sorted({int(i) for i in picks})


def _prepare(data: bytes, draft_size: int) -> Image.Image:
    img = _open(data)
    if img.format in ("JPEG", "MPO"):
        img.draft("RGB", (draft_size, draft_size))
    return img


def load_normalized(data: bytes, *, draft_size: int = 512) -> Image.Image:
    """Decode the first frame of ``data`` (reduced for JPEG) to an upright, flattened RGB image.

    Raises ``ValueError`` for bytes that are not a decodable JPEG/PNG/WebP/GIF.
    """
    img = _prepare(data, draft_size)
    with img:
        _load(img)
        return _to_rgb(_oriented(img))


def frames_for_scan(
    data: bytes, max_frames: int = 4, *, draft_size: int = 512
) -> list[Image.Image]:
    """Up to ``max_frames`` evenly spaced frames (first and last included) as flattened RGB.

    Stills give one frame. Raises ``ValueError`` for undecodable bytes.
    """
    img = _prepare(data, draft_size)
    frames: list[Image.Image] = []
    with img:
        for index in _frame_indices(_frame_count(img), max_frames):
            try:
                img.seek(index)
            except Exception as exc:
                raise ValueError(f"undecodable frame {index}: {exc}") from exc
            _load(img)
            frames.append(_to_rgb(_oriented(img)))
    return frames
