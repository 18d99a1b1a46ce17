"""NSFW scorer: one ONNX model described by a :class:`~services.scanner.cards.ModelCard`.

The default card is the YOLOv8n ``320n.onnx`` detector shipped in the ``nudenet`` wheel (only
the model file is used; never downloaded, never the package's own detector code). Its licence is
AGPL-3.0 (Ultralytics, per its own metadata) even though the wheel says MIT; any other ONNX
detector or classifier can replace it through a card. Nothing is loaded at import time.
"""

from __future__ import annotations

import ast
import hashlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from PIL import Image

from services.scanner.cards import (
    NUDENET_LABELS,
    NUDENET_NSFW_LABELS,
    ModelCard,
    card_from_setting,
    default_card,
    load_card,
    nudenet_model_path,
)

__all__ = [
    "NUDENET_LABELS",
    "NUDENET_NSFW_LABELS",
    "ModelCard",
    "NsfwModel",
    "card_from_setting",
    "default_card",
    "file_sha256",
    "letterbox",
    "load_card",
    "merge_max",
    "nsfw_score",
    "nudenet_model_path",
]

BOX_VALUES = 4  # cx, cy, w, h ahead of the class scores in each detector output column
PAD_GREY = 114  # Ultralytics letterbox fill


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


def _fixed(dim: object) -> int | None:
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def _softmax(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(x - x.max())
    return np.asarray(shifted / shifted.sum(), dtype=np.float32)


class NsfwModel:
    """One onnxruntime session for one card; :meth:`score` returns a score per label (0..1).

    Detector: per label, the highest class score over all candidate boxes (output
    ``[1, 4 + labels, N]``). Classifier: the output ``[1, labels]`` after the card's activation.
    """

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
        self.input_type: str = str(inp.type)
        self.input_shape: tuple[int | str | None, ...] = tuple(inp.shape)
        self.output_shape: tuple[int | str | None, ...] = tuple(out.shape)
        self._mean = np.asarray(card.mean, dtype=np.float32)
        self._std = np.asarray(card.std, dtype=np.float32)
        self._check_layout()

    def _check_layout(self) -> None:
        card, shape = self.card, self.input_shape
        if self.input_type != "tensor(float)":
            raise ValueError(f"model input is {self.input_type}, only float32 is supported")
        if len(shape) != 4:
            raise ValueError(f"expected a 4-d {card.layout} input, model has {shape}")
        if card.layout == "NCHW":
            channels, spatial = shape[1], shape[2:]
        else:
            channels, spatial = shape[3], shape[1:3]
        if _fixed(channels) not in (None, 3):
            raise ValueError(f"expected a {card.layout} 3-channel input, model has {shape}")
        if _fixed(shape[0]) not in (None, 1):
            raise ValueError(f"model input batch is {shape[0]}, need 1 or dynamic")
        for dim in spatial:
            fixed = _fixed(dim)
            if fixed is not None and fixed != card.input_size:
                raise ValueError(f"model input is {shape}, card says {card.input_size}")
        n_labels = len(card.labels)
        if card.kind == "detector":
            channels_out = self.output_shape[1] if len(self.output_shape) == 3 else None
            if channels_out != BOX_VALUES + n_labels:
                raise ValueError(
                    f"output {self.output_shape} does not hold 4 box values + "
                    f"{n_labels} class scores"
                )
        else:
            last = self.output_shape[-1] if len(self.output_shape) == 2 else None
            if _fixed(last) != n_labels:
                raise ValueError(
                    f"classifier output {self.output_shape} does not hold {n_labels} class scores"
                )
        meta = _metadata_labels(self._session)
        if meta is not None and meta != card.labels:
            raise ValueError(f"card labels differ from the model's own names: {meta}")

    @property
    def version(self) -> str:
        """First 12 hex chars of the model file's sha256."""
        return self._version

    def _tensor(self, img: Image.Image) -> npt.NDArray[np.float32]:
        card = self.card
        if card.resize == "letterbox":
            sized = letterbox(img, card.input_size)
        else:
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            size = (card.input_size, card.input_size)
            sized = rgb if rgb.size == size else rgb.resize(size, Image.Resampling.BILINEAR)
        arr = np.asarray(sized, dtype=np.float32) / np.float32(255.0)
        if card.channel_order == "BGR":
            arr = arr[..., ::-1]
        if card.mean != (0.0, 0.0, 0.0) or card.std != (1.0, 1.0, 1.0):
            arr = (arr - self._mean) / self._std
        if card.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr[np.newaxis], dtype=np.float32)

    def score(self, img: Image.Image) -> dict[str, float]:
        """Score per card label (0..1 for a sane model; the policy fails closed otherwise)."""
        (raw,) = self._session.run([self.output_name], {self.input_name: self._tensor(img)})
        out = np.asarray(raw, dtype=np.float32)
        n_labels = len(self.card.labels)
        if self.card.kind == "classifier":
            if out.shape != (1, n_labels):
                raise RuntimeError(f"unexpected classifier output shape {out.shape}")
            values = out[0]
            if self.card.activation == "softmax":
                values = _softmax(values)
            elif self.card.activation == "sigmoid":
                values = np.asarray(1.0 / (1.0 + np.exp(-values)), dtype=np.float32)
            return {label: float(v) for label, v in zip(self.card.labels, values, strict=True)}
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
    """Max over the card's thresholded labels; NaN if any is NaN or missing.

    A summary for records and metrics: the verdict comes from each label's own thresholds.
    """
    values = [scores.get(label, math.nan) for label in card.nsfw_labels]
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return max(values)
