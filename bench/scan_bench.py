"""Scanner benchmark: our decode + score path against nudenet's own ``NudeDetector.detect``
(the reference detector, OpenCV pre-processing), measured in the same run on the same files.

Reports images/s for each and the ratio. Run: ``make bench`` (or ``python -m bench.scan_bench``).
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from services.scanner.imaging import frames_for_scan
from services.scanner.model import NsfwModel, default_card

CORPUS = Path(
    os.environ.get("CHATPIC_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)


def photo_12mp() -> bytes:
    """A 4000x3000 camera-like JPEG made from a corpus photo (upscaled, with noise)."""
    with Image.open(CORPUS / "DSCN0010.jpg") as src:
        big = src.convert("RGB").resize((4000, 3000), Image.Resampling.BILINEAR)
    noise = np.random.default_rng(1).integers(0, 12, (3000, 4000, 3), dtype=np.uint8)
    arr = np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=90)
    return out.getvalue()


def per_image(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from nudenet import NudeDetector

    repeats = int(os.environ.get("BENCH_REPEATS", "7"))
    card = default_card()
    ours = NsfwModel(card, threads=1)
    reference = NudeDetector()
    reference.onnx_session.set_providers(["CPUExecutionProvider"])
    inputs = {"640x480 JPEG": (CORPUS / "DSCN0010.jpg").read_bytes(), "12 MP JPEG": photo_12mp()}
    print(f"{'input':<14} {'ours (s/img)':>13} {'reference':>11} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, data in inputs.items():
            path = Path(tmp) / "in.jpg"
            path.write_bytes(data)
            t_ours = per_image(lambda d=data: ours.score_frames(frames_for_scan(d)), repeats)
            t_ref = per_image(lambda p=str(path): reference.detect(p), repeats)
            print(f"{label:<14} {t_ours:>13.4f} {t_ref:>11.4f} {t_ref / t_ours:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
