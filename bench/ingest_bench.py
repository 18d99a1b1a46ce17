"""Intake benchmark: ``sanitize()`` against a naive Pillow pipeline and libvips, in the same run.

Inputs: the corpus photos (MANIFEST rows whose format is JPEG, MPO or HEIF and that are accepted)
and two 12-MP camera-size JPEGs generated here (landscape, and portrait stored sideways with
EXIF Orientation 6). For each input and pipeline: time per image (median and p95 over
``BENCH_REPEATS`` runs, pipelines interleaved), output bytes and output/input size, and PSNR and
SSIM of the output against a float Lanczos reference of the same size (full decode, sRGB through
the embedded ICC profile, orientation applied; per-channel float resize).

Pipelines:
- ours: ``sanitize(data, IntakeLimits())`` - everything the service does, thumbnail included.
- naive: Pillow open -> exif_transpose -> Lanczos resize to the 2048 cap -> JPEG q82.
- vips: ``pyvips.Image.thumbnail_buffer(data, 2048, size="down")`` -> ``jpegsave_buffer(Q=82,
  strip=True)``. ``size="down"`` because thumbnail would otherwise *upscale* smaller photos.
- vips=: the same, to exactly our output size (our output may be under the cap, see
  ``intake_pixels.shrink_factor``), for a same-size comparison of speed, bytes and quality.
- vips1: vips at 2048 with one thread (vips_concurrency_set(1)); ours and naive use one thread
  for pixels (pillow-heif decodes HEIC with its own threads), vips by default one per core.

Run: ``python -m bench.ingest_bench`` (``BENCH_REPEATS``, default 7; ``CHATPIC_CORPUS``).
libvips is optional (``pip install pyvips`` plus the libvips shared library, e.g. Debian's
``libvips42``); without it only the naive reference is measured.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps

from services.ingest.intake import IntakeLimits, accepted_formats, sanitize
from services.shared.errors import IntakeError

CORPUS = Path(
    os.environ.get("CHATPIC_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
CAP = 2048
QUALITY = 82
PHOTO_FORMATS = ("JPEG", "MPO", "HEIF")

Array = np.ndarray[Any, np.dtype[np.float64]]


@dataclass
class Result:
    times: list[float] = field(default_factory=list)
    data: bytes = b""


def camera_jpeg(orientation: int) -> bytes:
    """A 4000x3000 camera-like JPEG (q92, EXIF with Make/Model and Orientation).

    Made from a corpus photo: Lanczos upscale plus sensor-like grain. With orientation 6 the
    pixels are stored sideways (3000x4000 upright) as phones do.
    """
    with Image.open(CORPUS / "Reconyx_HC500_Hyperfire.jpg") as src:
        big = src.convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS)
    grain = np.random.default_rng(1).normal(0.0, 2.5, (3000, 4000, 3))
    pixels = np.clip(np.asarray(big, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    if orientation == 6:
        img = img.transpose(Image.Transpose.ROTATE_90)  # stored sideways; EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "BenchCam", "Model 12", orientation
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def corpus_photos() -> dict[str, bytes]:
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8") as manifest:
        rows = list(csv.DictReader(manifest, delimiter="\t"))
    photos = {}
    for row in rows:
        if row["format"].split()[0] not in PHOTO_FORMATS:
            continue
        data = (CORPUS / row["filename"]).read_bytes()
        try:
            sanitize(data, IntakeLimits())
        except IntakeError:
            continue  # refused on purpose (truncated_jpeg.jpg): nothing to time
        photos[row["filename"]] = data
    return photos


def naive(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        img = ImageOps.exif_transpose(im).convert("RGB")
    if max(img.size) > CAP:
        scale = CAP / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def load_vips() -> Any | None:
    """pyvips, or None with the reason printed. Import after pillow-heif is registered: with
    Debian's libvips loaded first, pillow-heif's own libheif crashed (segfault) in one process."""
    try:
        vips = importlib.import_module("pyvips")
    except (ImportError, OSError) as exc:
        print(f"libvips unavailable ({type(exc).__name__}: {exc}); naive Pillow reference only")
        return None
    vips.cache_set_max(0)  # every call does the work: no cached results across repeats
    return vips


def vips_pipeline(
    vips: Any, width: int, height: int | None = None, *, threads: int | None = None
) -> Callable[[bytes], bytes]:
    """thumbnail_buffer + jpegsave_buffer; ``threads``: vips concurrency for this pipeline only."""

    def run(data: bytes) -> bytes:
        options = {"size": "down"} if height is None else {"height": height, "size": "down"}
        default = vips.vips_lib.vips_concurrency_get()
        if threads is not None:
            vips.vips_lib.vips_concurrency_set(threads)
        try:
            image = vips.Image.thumbnail_buffer(data, width, **options)
            return bytes(image.jpegsave_buffer(Q=QUALITY, strip=True))
        finally:
            vips.vips_lib.vips_concurrency_set(default)

    return run


class Reference:
    """Float Lanczos references of one input, at any size: full decode, sRGB, upright."""

    def __init__(self, data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            icc = im.info.get("icc_profile")
            upright = ImageOps.exif_transpose(im).convert("RGB")
        if icc:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(upright, profile, srgb)
            upright = converted if converted is not None else upright
        self._bands = [band.convert("F") for band in upright.split()]
        self._sizes: dict[tuple[int, int], Array] = {}

    def at(self, size: tuple[int, int]) -> Array:
        if size not in self._sizes:
            bands = [band.resize(size, Image.Resampling.LANCZOS) for band in self._bands]
            stacked = np.stack([np.asarray(band, dtype=np.float64) for band in bands], -1)
            self._sizes[size] = np.clip(stacked, 0, 255)
        return self._sizes[size]


def decoded(data: bytes) -> Array:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def psnr(out: Array, ref: Array) -> float:
    mse = float(np.mean((out - ref) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _box_mean(a: Array, k: int) -> Array:
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    mean: Array = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    return mean


def ssim(out: Array, ref: Array, k: int = 7) -> float:
    """Mean SSIM of the luma (BT.601) with a k x k uniform window."""
    weights = np.array([0.299, 0.587, 0.114])
    x, y = out @ weights, ref @ weights
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box_mean(x, k), _box_mean(y, k)
    vx = _box_mean(x * x, k) - mx * mx
    vy = _box_mean(y * y, k) - my * my
    cov = _box_mean(x * y, k) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def measure(
    pipelines: dict[str, Callable[[bytes], bytes]], data: bytes, repeats: int
) -> dict[str, Result]:
    results = {name: Result() for name in pipelines}
    for name, run in pipelines.items():
        results[name].data = run(data)  # warm-up, and the output we judge
    order = list(pipelines)
    for repeat in range(repeats):
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
            start = time.perf_counter()
            pipelines[name](data)
            results[name].times.append(time.perf_counter() - start)
    return results


def p95(times: list[float]) -> float:
    return float(np.percentile(times, 95))


def main() -> int:
    repeats = int(os.environ.get("BENCH_REPEATS", "7"))
    limits = IntakeLimits()
    accepted_formats()  # registers pillow-heif before libvips is loaded (see load_vips)
    vips = load_vips()
    inputs = {"12MP camera JPEG": camera_jpeg(1), "12MP JPEG, EXIF 6": camera_jpeg(6)}
    inputs.update(corpus_photos())
    if vips is not None:
        print(f"libvips {vips.version(0)}.{vips.version(1)}.{vips.version(2)}, ", end="")
        print(f"concurrency {vips.vips_lib.vips_concurrency_get()}; ", end="")
    print(f"{repeats} runs per pipeline and image, interleaved; times in ms\n")
    names = ["ours", "naive"] + (["vips", "vips=", "vips1"] if vips is not None else [])
    timing_rows, quality_rows = [], []
    totals: dict[str, float] = dict.fromkeys(names, 0.0)
    ratios: dict[str, list[float]] = {name: [] for name in names[1:]}
    for label, data in inputs.items():
        ours = sanitize(data, limits)
        pipelines: dict[str, Callable[[bytes], bytes]] = {
            "ours": lambda d: sanitize(d, limits).data,
            "naive": naive,
        }
        if vips is not None:
            pipelines["vips"] = vips_pipeline(vips, CAP)
            pipelines["vips="] = vips_pipeline(vips, ours.width, ours.height)
            pipelines["vips1"] = vips_pipeline(vips, CAP, threads=1)
        results = measure(pipelines, data, repeats)
        medians = {name: statistics.median(results[name].times) * 1000 for name in names}
        for name in names:
            totals[name] += medians[name]
        for name in names[1:]:
            ratios[name].append(medians["ours"] / medians[name])
        timing_rows.append(
            [label, f"{len(data) // 1024}"]
            + [f"{medians[n]:.0f}/{p95(results[n].times) * 1000:.0f}" for n in names]
            + [f"{medians['ours'] / medians[n]:.2f}" for n in names[1:]]
        )
        cells = [label]
        references = Reference(data)
        for name in names:
            out = results[name].data
            pixels = decoded(out)
            ref = references.at((pixels.shape[1], pixels.shape[0]))
            cells.append(
                f"{pixels.shape[1]}x{pixels.shape[0]} {len(out) // 1024}K "
                f"{len(out) / len(data):.2f} {psnr(pixels, ref):.1f}dB {ssim(pixels, ref):.3f}"
            )
        quality_rows.append(cells)
    head = ["input", "in KB"] + [f"{n} med/p95" for n in names] + [f"ours/{n}" for n in names[1:]]
    print_table(head, timing_rows)
    print()
    print_table(["input"] + [f"{n}: size KB out/in PSNR SSIM" for n in names], quality_rows)
    print()
    for name in names[1:]:
        geo = float(np.exp(np.mean(np.log(ratios[name]))))
        print(
            f"ours/{name}: sum of medians {totals['ours']:.0f} / {totals[name]:.0f} ms "
            f"= {totals['ours'] / totals[name]:.2f}; geometric mean of per-image ratios {geo:.2f}"
        )
    return 0


def print_table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
