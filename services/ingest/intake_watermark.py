"""Optional text watermark on the served variant (part of ``services.ingest.intake``).

Drawn bottom-right, white at ~60% opacity with a faint dark outline so it reads on any
background, with Pillow's built-in font (``ImageFont.load_default``: the Aileron face bundled
with Pillow, no font files). Its size follows the image: about 1/22 of the short edge, smaller
if the text would cover more than 3/4 of the width. The overlay is rendered once per upload and
composited onto every frame; the thumbnail never gets it.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

from services.shared.errors import IntakeError

MAX_WATERMARK_CHARS = 40
_TEXT_FILL = (255, 255, 255, 153)
_OUTLINE_FILL = (0, 0, 0, 102)
_MIN_FONT_PX = 8


def check_watermark(text: str | None) -> str | None:
    """The text to draw, or None; anything else than 1-40 printable characters is a 400."""
    if text is None:
        return None
    if (
        not isinstance(text, str)
        or not 0 < len(text) <= MAX_WATERMARK_CHARS
        or not text.isprintable()
        or not text.strip()
    ):
        raise IntakeError(
            f"The watermark must be 1 to {MAX_WATERMARK_CHARS} printable characters.",
            code="invalid_watermark",
            status=400,
            maximum=MAX_WATERMARK_CHARS,
        )
    return text


class Watermark:
    """The rendered text for one output size, ready to composite onto frames of that size."""

    def __init__(self, text: str, size: tuple[int, int]) -> None:
        width, height = size
        font_px = max(_MIN_FONT_PX, round(min(width, height) / 22))
        left, top, right, bottom = _text_box(text, font_px)
        if right - left > 0.75 * width and font_px > _MIN_FONT_PX:
            font_px = max(_MIN_FONT_PX, int(font_px * 0.75 * width / (right - left)))
            left, top, right, bottom = _text_box(text, font_px)
        overlay = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
        ImageDraw.Draw(overlay).text(
            (-left, -top),
            text,
            font=ImageFont.load_default(size=font_px),
            fill=_TEXT_FILL,
            stroke_width=_outline(font_px),
            stroke_fill=_OUTLINE_FILL,
        )
        margin = max(2, font_px // 2)
        x = max(0, width - overlay.width - margin)
        y = max(0, height - overlay.height - margin)
        # Clipped to the image (tiny images): the overlay must lie inside what it is drawn on.
        self._overlay = overlay.crop(
            (0, 0, min(overlay.width, width - x), min(overlay.height, height - y))
        )
        self._position = (x, y)
        self._mask = self._overlay.getchannel("A")
        self._opaque = self._overlay.convert("RGB")

    def draw_on(self, img: Image.Image) -> None:
        """Composite in place (RGBA: proper "over" compositing; RGB: paste through the alpha)."""
        if img.mode == "RGBA":
            img.alpha_composite(self._overlay, dest=self._position)
        else:
            img.paste(self._opaque, self._position, self._mask)


def _outline(font_px: int) -> int:
    return max(1, font_px // 16)


def _text_box(text: str, font_px: int) -> tuple[int, int, int, int]:
    font = ImageFont.load_default(size=font_px)
    left, top, right, bottom = font.getbbox(text, stroke_width=_outline(font_px))
    return math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom)
