"""NSFW scorer around the YOLOv8n ``320n.onnx`` detector shipped in the ``nudenet`` wheel.

Only the model file is used (never downloaded, never the package's own detector code). The
model's licence is AGPL-3.0 (Ultralytics, per its own metadata) even though the wheel says MIT;
keep it swappable through :class:`ModelCard`. Nothing is loaded at import time.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from PIL import Image

BOX_VALUES = 4  # cx, cy, w, h ahead of the class scores in each output column
PAD_GREY = 114  # Ultralytics letterbox fill

NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
NUDENET_NSFW_LABELS: tuple[str, ...] = (
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
)


@dataclass(frozen=True)
class ModelCard:
    name: str
    path: str
    input_size: int
    labels: tuple[str, ...]
    nsfw_labels: tuple[str, ...]

    def __post_init__(self) -> None:
        missing = set(self.nsfw_labels) - set(self.labels)
        if missing:
            raise ValueError(f"nsfw_labels not in labels: {sorted(missing)}")


def nudenet_model_path() -> Path:
    """Path of ``320n.onnx`` inside the installed nudenet package (the package is not imported)."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nudenet package is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "320n.onnx"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("320n.onnx not found inside the nudenet package")


def default_card() -> ModelCard:
    return ModelCard(
        name="nudenet-320n",
        path=str(nudenet_model_path()),
        input_size=320,
        labels=NUDENET_LABELS,
        nsfw_labels=NUDENET_NSFW_LABELS,
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def letterbox(img: Image.Image, size: int, fill: int = PAD_GREY) -> Image.Image:
    """Resize keeping aspect to fit ``size``x``size`` and paste top-left on a grey canvas."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    width, height = rgb.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != rgb.size:
        rgb = rgb.resize(new_size, Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(rgb, (0, 0))
    return canvas


def _metadata_labels(session: ort.InferenceSession) -> tuple[str, ...] | None:
    raw = session.get_modelmeta().custom_metadata_map.get("names")
    if raw is None:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(names, dict):
        return None
    return tuple(str(names[i]) for i in sorted(names))


class NsfwModel:
    """One onnxruntime session; per-label max class score over all candidate boxes."""

    def __init__(self, card: ModelCard, threads: int = 1) -> None:
        self.card = card
        self._version = file_sha256(card.path)[:12]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            card.path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        inp = self._session.get_inputs()[0]
        out = self._session.get_outputs()[0]
        self.input_name: str = inp.name
        self.output_name: str = out.name
        self.input_shape: tuple[int | str | None, ...] = tuple(inp.shape)
        self.output_shape: tuple[int | str | None, ...] = tuple(out.shape)
        self._check_layout()

    def _check_layout(self) -> None:
        shape = self.input_shape
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"expected an NCHW 3-channel input, model has {shape}")
        for dim in shape[2:]:
            if isinstance(dim, int) and dim != self.card.input_size:
                raise ValueError(f"model input is {shape}, card says {self.card.input_size}")
        channels = self.output_shape[1] if len(self.output_shape) == 3 else None
        if channels != BOX_VALUES + len(self.card.labels):
            raise ValueError(
                f"output {self.output_shape} does not hold 4 box values + "
                f"{len(self.card.labels)} class scores"
            )
        meta = _metadata_labels(self._session)
        if meta is not None and meta != self.card.labels:
            raise ValueError(f"card labels differ from the model's own names: {meta}")

    @property
    def version(self) -> str:
        """First 12 hex chars of the model file's sha256."""
        return self._version

    def _tensor(self, img: Image.Image) -> npt.NDArray[np.float32]:
        boxed = letterbox(img, self.card.input_size)
        arr = np.asarray(boxed, dtype=np.float32) / np.float32(255.0)
        return np.ascontiguousarray(arr.transpose(2, 0, 1)[np.newaxis])

    def score(self, img: Image.Image) -> dict[str, float]:
        """Per label, the highest class score over all candidate boxes (0..1)."""
        (raw,) = self._session.run([self.output_name], {self.input_name: self._tensor(img)})
        out = np.asarray(raw, dtype=np.float32)
        n_labels = len(self.card.labels)
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] != BOX_VALUES + n_labels:
            raise RuntimeError(f"unexpected model output shape {out.shape}")
        class_scores = out[0, BOX_VALUES:, :]
        if class_scores.shape[1] == 0:
            best = np.zeros(n_labels, dtype=np.float32)
        else:
            best = class_scores.max(axis=1)
        return {label: float(v) for label, v in zip(self.card.labels, best, strict=True)}

    def score_frames(self, frames: Iterable[Image.Image]) -> dict[str, float]:
        """Per-label max over frames: the worst frame counts. Needs at least one frame."""
        return merge_max(self.score(frame) for frame in frames)


def merge_max(per_frame: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-label maximum; a NaN in any frame makes that label NaN (fail closed)."""
    merged: dict[str, float] = {}
    for scores in per_frame:
        for label, value in scores.items():
            prev = merged.get(label)
            if prev is None or math.isnan(value) or (not math.isnan(prev) and value > prev):
                merged[label] = value
    if not merged:
        raise ValueError("no frames to score")
    return merged


def nsfw_score(scores: Mapping[str, float], card: ModelCard) -> float:
    """Max over the card's exposed-explicit labels; NaN if any is NaN or missing."""
    values = [scores.get(label, math.nan) for label in card.nsfw_labels]
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return max(values)
