"""Scanner throughput on this machine: images/s for 1 and 2 scanner processes (each with one
onnxruntime thread, as `make run` starts them), doing what a scanner does per image — decode
reduced, pHash + dHash + PDQ, score the frames — on a 12 MP camera JPEG and on the ≤2048 px
JPEG ingest actually stores. The reference (nudenet's own `detect()`, one process) is measured
in the same run. Run: ``python -m bench.scan_throughput``."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.scan_bench import photo_12mp


def _worker(data: bytes, count: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    from services.scanner.hashing import image_signals
    from services.scanner.imaging import frames_for_scan
    from services.scanner.model import NsfwModel, default_card

    model = NsfwModel(default_card(), threads=1)
    frames = frames_for_scan(data, draft_size=320)  # warm-up; 320 = the scanner's default
    model.score_frames(frames)
    start = time.perf_counter()
    for _ in range(count):
        frames = frames_for_scan(data, draft_size=320)
        image_signals(frames[0])
        model.score_frames(frames)
    queue.put(time.perf_counter() - start)


def throughput(data: bytes, processes: int, per_process: int) -> float:
    ctx = mp.get_context("spawn")  # never fork after an onnxruntime session exists
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_worker, args=(data, per_process, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    times = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return processes * per_process / max(times)


def reference_rate(data: bytes, count: int) -> float:
    from nudenet import NudeDetector

    detector = NudeDetector()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jpg"
        path.write_bytes(data)
        detector.detect(str(path))
        start = time.perf_counter()
        for _ in range(count):
            detector.detect(str(path))
        return count / (time.perf_counter() - start)


def main() -> int:
    from services.ingest.intake import IntakeLimits, sanitize

    per_process = int(os.environ.get("BENCH_IMAGES", "30"))
    raw = photo_12mp()
    stored = sanitize(raw, IntakeLimits()).data
    print(f"{'input':<22} {'reference 1p':>13} {'ours 1p':>9} {'ours 2p':>9} {'2p/ref':>7}")
    for label, data in (("12 MP camera JPEG", raw), ("stored (≤2048 px)", stored)):
        ref = reference_rate(data, max(5, per_process // 3))
        one = throughput(data, 1, per_process)
        two = throughput(data, 2, per_process)
        print(f"{label:<22} {ref:>11.1f}/s {one:>7.1f}/s {two:>7.1f}/s {two / ref:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
