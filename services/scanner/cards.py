"""Model cards: which ONNX file, how to feed it, what its outputs mean and where the thresholds are.

A card is a small JSON file (``CHATPIC_MODEL_CARD``; empty = the built-in nudenet card)::

    {
      "name": "my-nsfw-classifier",
      "path": "nsfw.onnx",
      "kind": "classifier",
      "input_size": 224,
      "mean": [0.485, 0.456, 0.406],
      "std": [0.229, 0.224, 0.225],
      "channel_order": "RGB",
      "layout": "NCHW",
      "labels": ["neutral", "nsfw"],
      "thresholds": {"nsfw": {"review": 0.5, "blocked": 0.9}}
    }

A relative ``path`` is resolved against the card file's directory; ``nudenet:<file>`` names a
file inside the installed ``nudenet`` package. Only labels with thresholds count towards NSFW.
Nothing is read at import time.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from services.scanner.policy import LabelThresholds

Kind = Literal["detector", "classifier"]
KINDS: tuple[str, ...] = ("detector", "classifier")
CHANNEL_ORDERS: tuple[str, ...] = ("RGB", "BGR")
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")
RESIZES: tuple[str, ...] = ("letterbox", "stretch")
ACTIVATIONS: tuple[str, ...] = ("none", "softmax", "sigmoid")
NUDENET_PREFIX = "nudenet:"

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
DEFAULT_REVIEW = 0.45
DEFAULT_BLOCKED = 0.8


def _field_error(name: str, problem: str) -> ValueError:
    return ValueError(f"model card field '{name}': {problem}")


@dataclass(frozen=True)
class ModelCard:
    """What the scanner needs to run one ONNX model. ``path`` is an actual file path."""

    name: str
    path: str
    input_size: int
    labels: tuple[str, ...]
    thresholds: Mapping[str, LabelThresholds]
    kind: Kind = "detector"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "letterbox"  # letterbox: keep aspect, pad right/bottom; stretch: squash
    activation: str = "none"  # applied to classifier outputs (detector scores are used as is)
    source: str = field(default="", compare=False)  # the card file, for messages

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise _field_error("name", "must be a non-empty string")
        if not isinstance(self.path, str) or not self.path:
            raise _field_error("path", "must be a non-empty string")
        if self.kind not in KINDS:
            raise _field_error("kind", f"must be one of {list(KINDS)}, got {self.kind!r}")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int):
            raise _field_error("input_size", f"must be an integer, got {self.input_size!r}")
        if not 1 <= self.input_size <= 4096:
            raise _field_error("input_size", f"must be 1..4096, got {self.input_size}")
        _check_triple("mean", self.mean)
        _check_triple("std", self.std)
        if any(v <= 0 for v in self.std):
            raise _field_error("std", f"every value must be > 0, got {list(self.std)}")
        for name, value, allowed in (
            ("channel_order", self.channel_order, CHANNEL_ORDERS),
            ("layout", self.layout, LAYOUTS),
            ("resize", self.resize, RESIZES),
            ("activation", self.activation, ACTIVATIONS),
        ):
            if value not in allowed:
                raise _field_error(name, f"must be one of {list(allowed)}, got {value!r}")
        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise _field_error("labels", "must be a non-empty list of non-empty strings")
        if len(set(self.labels)) != len(self.labels):
            raise _field_error("labels", "must not repeat a label")
        if not self.thresholds:
            raise _field_error("thresholds", "must give review/blocked for at least one label")
        unknown = [label for label in self.thresholds if label not in self.labels]
        if unknown:
            raise _field_error("thresholds", f"labels not in 'labels': {sorted(unknown)}")
        for label, t in self.thresholds.items():
            if not isinstance(t, LabelThresholds):
                raise _field_error(f"thresholds.{label}", "must be LabelThresholds")

    @property
    def nsfw_labels(self) -> tuple[str, ...]:
        """Labels that count towards NSFW (those with thresholds), in model order."""
        return tuple(label for label in self.labels if label in self.thresholds)

    def thresholds_record(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for label in self.nsfw_labels:
            t = self.thresholds[label]
            out[label] = {"review": t.review, "blocked": t.blocked}
        return out


def _check_triple(name: str, value: Any) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 3
        or not all(_is_number(v) and math.isfinite(v) for v in value)
    ):
        raise _field_error(name, f"must be a list of 3 finite numbers, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def nudenet_model_path(filename: str = "320n.onnx") -> Path:
    """Path of a file inside the installed nudenet package (the package is not imported)."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nudenet package is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{filename} not found inside the nudenet package")


def nudenet_card_dict(
    review: float = DEFAULT_REVIEW, blocked: float = DEFAULT_BLOCKED
) -> dict[str, Any]:
    """The built-in card, as it would be written in JSON."""
    return {
        "name": "nudenet-320n",
        "path": f"{NUDENET_PREFIX}320n.onnx",
        "kind": "detector",
        "input_size": 320,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "channel_order": "RGB",
        "layout": "NCHW",
        "resize": "letterbox",
        "labels": list(NUDENET_LABELS),
        "thresholds": {
            label: {"review": review, "blocked": blocked} for label in NUDENET_NSFW_LABELS
        },
    }


def default_card(review: float = DEFAULT_REVIEW, blocked: float = DEFAULT_BLOCKED) -> ModelCard:
    """nudenet's ``320n.onnx``; the exposed-explicit labels share ``review``/``blocked``."""
    return card_from_dict(nudenet_card_dict(review, blocked), base_dir=None, source="built-in")


_REQUIRED = ("name", "path", "kind", "input_size", "labels", "thresholds")
_OPTIONAL = ("mean", "std", "channel_order", "layout", "resize", "activation")


def _resolve_path(raw: str, base_dir: Path | None) -> str:
    if raw.startswith(NUDENET_PREFIX):
        filename = raw[len(NUDENET_PREFIX) :]
        if not filename or "/" in filename or "\\" in filename:
            raise _field_error("path", f"'{NUDENET_PREFIX}' needs a plain file name, got {raw!r}")
        try:
            return str(nudenet_model_path(filename))
        except FileNotFoundError as exc:
            raise _field_error("path", str(exc)) from exc
    path = Path(raw).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise _field_error("path", f"no such model file: {path}")
    return str(path)


def _triple(data: Mapping[str, Any], name: str, default: float) -> tuple[float, float, float]:
    value = data.get(name, [default] * 3)
    if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
        raise _field_error(name, f"must be a list of 3 numbers, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _thresholds(raw: Any) -> dict[str, LabelThresholds]:
    if not isinstance(raw, dict) or not raw:
        raise _field_error("thresholds", "must be a non-empty object {label: {review, blocked}}")
    out: dict[str, LabelThresholds] = {}
    for label, spec in raw.items():
        where = f"thresholds.{label}"
        if not isinstance(spec, dict) or set(spec) != {"review", "blocked"}:
            raise _field_error(where, f"must be {{'review': x, 'blocked': y}}, got {spec!r}")
        for key in ("review", "blocked"):
            if not _is_number(spec[key]):
                raise _field_error(f"{where}.{key}", f"must be a number, got {spec[key]!r}")
        try:
            out[str(label)] = LabelThresholds(float(spec["review"]), float(spec["blocked"]))
        except ValueError as exc:
            raise _field_error(where, str(exc)) from exc
    return out


def card_from_dict(
    data: Mapping[str, Any], base_dir: Path | None, source: str = "<dict>"
) -> ModelCard:
    """Validate a parsed card; errors are ``ValueError`` naming the field."""
    if not isinstance(data, Mapping):
        raise ValueError(f"model card {source}: must be a JSON object")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _field_error(missing[0], f"is required (missing: {missing})")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _field_error(unknown[0], f"is not a card field (unknown: {unknown})")
    for name in ("name", "path", "kind", "channel_order", "layout", "resize", "activation"):
        if name in data and not isinstance(data[name], str):
            raise _field_error(name, f"must be a string, got {data[name]!r}")
    kind = data["kind"]
    if kind not in KINDS:
        raise _field_error("kind", f"must be one of {list(KINDS)}, got {kind!r}")
    labels = data["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _field_error("labels", f"must be a list of strings, got {labels!r}")
    size = data["input_size"]
    if isinstance(size, bool) or not isinstance(size, int):
        raise _field_error("input_size", f"must be an integer, got {size!r}")
    thresholds = _thresholds(data["thresholds"])
    # Validate the cheap fields before touching the file system.
    card = ModelCard(
        name=data["name"],
        path="<unresolved>",
        input_size=size,
        labels=tuple(labels),
        thresholds=thresholds,
        kind=kind,
        mean=_triple(data, "mean", 0.0),
        std=_triple(data, "std", 1.0),
        channel_order=data.get("channel_order", "RGB"),
        layout=data.get("layout", "NCHW"),
        resize=data.get("resize", "letterbox" if kind == "detector" else "stretch"),
        activation=data.get("activation", "none"),
        source=source,
    )
    return replace(card, path=_resolve_path(data["path"], base_dir))


def load_card(path: str | Path) -> ModelCard:
    """Read a JSON card file; a relative model ``path`` is taken from the card's directory."""
    card_path = Path(path).expanduser()
    try:
        text = card_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"model card {card_path}: cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model card {card_path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"model card {card_path}: must be a JSON object")
    try:
        return card_from_dict(data, base_dir=card_path.resolve().parent, source=str(card_path))
    except ValueError as exc:
        raise ValueError(f"{card_path}: {exc}") from exc


def card_from_setting(
    value: str, review: float = DEFAULT_REVIEW, blocked: float = DEFAULT_BLOCKED
) -> ModelCard:
    """``CHATPIC_MODEL_CARD``: a card file, or empty for the built-in card with these thresholds."""
    if value.strip():
        return load_card(value.strip())
    return default_card(review, blocked)
