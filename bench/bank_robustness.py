"""Hash-bank robustness: which altered copies of a banned photo each signal type still catches
at its default threshold, and whether a banned hash ever matches an unrelated corpus image.

Bans ``BANNED`` (hashes of the normalised original, as the scanner computes them), then makes
``TRANSFORMS`` of each from the full-resolution upright pixels and re-encodes them as a user
would. "Caught" means the Hamming distance is within the default threshold (pHash/dHash 8 of
64, PDQ 31 of 256) and, for PDQ, the copy's quality is at least 50. False matches compare every
banned hash and every altered copy with every other decodable corpus image that is not the same
scene (Landscape_1..8 are Landscape_0 with an EXIF orientation).

Run: ``python -m bench.bank_robustness`` (a few seconds).
"""

from __future__ import annotations

import io
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from services.scanner.hashing import (
    DEFAULT_THRESHOLDS,
    PDQ_MIN_QUALITY,
    SIGNAL_TYPES,
    ImageSignals,
    hamming,
    image_signals,
)
from services.scanner.imaging import load_normalized
from tests.unit.corpus import corpus_dir

BANNED: tuple[str, ...] = (
    "DSCN0010.jpg",
    "DSCN0021.jpg",
    "Landscape_0.jpg",
    "Canon_40D.jpg",
    "Reconyx_HC500_Hyperfire.jpg",
    "canon_hdr_NO.jpg",
)
SIGNALS: tuple[str, ...] = tuple(SIGNAL_TYPES)  # phash, dhash, pdq
_SAME_SCENE_PREFIXES = ("Landscape_",)


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _half(img: Image.Image) -> bytes:
    size = (max(1, img.width // 2), max(1, img.height // 2))
    return _jpeg(img.resize(size, Image.Resampling.LANCZOS))


def _border_crop(img: Image.Image) -> bytes:
    dx, dy = round(img.width * 0.02), round(img.height * 0.02)
    return _jpeg(img.crop((dx, dy, img.width - dx, img.height - dy)))


def _watermark(img: Image.Image) -> bytes:
    marked = img.copy()
    draw = ImageDraw.Draw(marked)
    size = max(10, img.height // 12)
    font = ImageFont.load_default(size=size)
    draw.text(
        (img.width * 0.05, img.height * 0.8),
        "(c) shared on chatpic",
        fill=(255, 255, 255),
        font=font,
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0),
    )
    return _jpeg(marked)


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg_q50": lambda img: _jpeg(img, 50),
    "resize_50": _half,
    "crop_2pct": _border_crop,  # 2% off every edge
    "watermark": _watermark,  # white text with a dark outline across the lower fifth
    "grayscale": lambda img: _jpeg(img.convert("L")),
}


def _upright(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as src:
        return ImageOps.exif_transpose(src).convert("RGB")


def _decode_any(data: bytes) -> Image.Image | None:
    """The scanner's normalised image; other formats (HEIC, TIFF, BMP, ...) via a PNG re-encode,
    as ingest would hand them on. None when Pillow cannot decode it at all."""
    try:
        return load_normalized(data)
    except ValueError:
        pass
    try:
        upright = _upright(data)
    except Exception:
        return None
    out = io.BytesIO()
    upright.save(out, "PNG")
    return load_normalized(out.getvalue())


def _register_heif() -> None:
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a dependency, but the bench degrades gracefully
        return
    pillow_heif.register_heif_opener()


def _scene(name: str) -> str:
    for prefix in _SAME_SCENE_PREFIXES:
        if name.startswith(prefix):
            return prefix
    return name


def caught(signal: str, banned: ImageSignals, copy: ImageSignals) -> bool:
    """Would ``copy`` match the ban at the default threshold (and PDQ quality minimum)?"""
    if signal == "pdq" and copy.pdq_quality < PDQ_MIN_QUALITY:
        return False
    return hamming(banned.get(signal), copy.get(signal)) <= DEFAULT_THRESHOLDS[signal]


@dataclass(frozen=True)
class CopyResult:
    photo: str
    transform: str
    distances: dict[str, int]
    caught: dict[str, bool]
    pdq_quality: int
    hashable: bool


@dataclass(frozen=True)
class FalseMatch:
    banned: str  # "photo" or "photo/transform"
    other: str
    signal: str
    distance: int


@dataclass(frozen=True)
class Report:
    copies: list[CopyResult]
    false_matches: list[FalseMatch]
    min_unrelated: dict[str, int]  # smallest distance from any ban/copy to an unrelated image
    compared: int  # unrelated corpus images compared
    seconds: float

    def caught_count(self, transform: str, signal: str) -> int:
        return sum(c.caught[signal] for c in self.copies if c.transform == transform)


def _corpus_images(root: Path) -> Iterator[tuple[str, ImageSignals]]:
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in (".tsv", ".md"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the corpus has deliberately broken metadata
            img = _decode_any(path.read_bytes())
        if img is not None:
            yield path.name, image_signals(img)


def measure(banned: tuple[str, ...] = BANNED) -> Report:
    start = time.perf_counter()
    _register_heif()
    root = corpus_dir()
    bans: dict[str, ImageSignals] = {}
    copies: list[CopyResult] = []
    probes: list[tuple[str, str, ImageSignals]] = []  # (label, scene, signals)
    for name in banned:
        data = (root / name).read_bytes()
        ban = image_signals(load_normalized(data))
        bans[name] = ban
        probes.append((name, _scene(name), ban))
        upright = _upright(data)
        for label, transform in TRANSFORMS.items():
            copy = image_signals(load_normalized(transform(upright)))
            probes.append((f"{name}/{label}", _scene(name), copy))
            copies.append(
                CopyResult(
                    photo=name,
                    transform=label,
                    distances={s: hamming(ban.get(s), copy.get(s)) for s in SIGNALS},
                    caught={s: caught(s, ban, copy) for s in SIGNALS},
                    pdq_quality=copy.pdq_quality,
                    hashable=copy.hashable,
                )
            )
    false_matches: list[FalseMatch] = []
    min_unrelated = {s: SIGNAL_TYPES[s].bits for s in SIGNALS}
    compared = 0
    for other, sig in _corpus_images(root):
        if _scene(other) in {_scene(n) for n in banned}:
            continue
        compared += 1
        for label, _, probe in probes:
            for s in SIGNALS:
                d = hamming(probe.get(s), sig.get(s))
                if s == "pdq" and min(probe.pdq_quality, sig.pdq_quality) < PDQ_MIN_QUALITY:
                    continue  # never acted on
                min_unrelated[s] = min(min_unrelated[s], d)
                if d <= DEFAULT_THRESHOLDS[s]:
                    false_matches.append(FalseMatch(label, other, s, d))
    return Report(copies, false_matches, min_unrelated, compared, time.perf_counter() - start)


def render(report: Report) -> str:
    n = len({c.photo for c in report.copies})
    head = "| transform | " + " | ".join(f"{s} (≤{DEFAULT_THRESHOLDS[s]})" for s in SIGNALS)
    lines = [head + " |", "|---" * (len(SIGNALS) + 1) + "|"]
    for label in TRANSFORMS:
        cells = []
        for s in SIGNALS:
            ds = [c.distances[s] for c in report.copies if c.transform == label]
            cells.append(f"{report.caught_count(label, s)}/{n} (d {min(ds)}-{max(ds)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"False matches against {report.compared} unrelated corpus images: "
        f"{len(report.false_matches)}; closest unrelated distance "
        + ", ".join(f"{s} {report.min_unrelated[s]}" for s in SIGNALS)
        + "."
    )
    for fm in report.false_matches:
        lines.append(f"  FALSE MATCH {fm.banned} ~ {fm.other}: {fm.signal} d={fm.distance}")
    lines.append("")
    lines.append("Per copy (distance pHash/dHash/PDQ, PDQ quality, caught by):")
    for c in report.copies:
        by = ",".join(s for s in SIGNALS if c.caught[s]) or "none"
        d = "/".join(str(c.distances[s]) for s in SIGNALS)
        lines.append(f"  {c.photo:28} {c.transform:10} {d:>9}  q{c.pdq_quality:<3}  {by}")
    lines.append(f"({report.seconds:.1f} s)")
    return "\n".join(lines)


def main() -> int:
    report = measure()
    print(render(report))
    return 1 if report.false_matches else 0


if __name__ == "__main__":
    sys.exit(main())
