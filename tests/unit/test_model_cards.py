"""Model cards and swappable models, proven with tiny ONNX models generated in the test."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image

from services.scanner.cards import (
    ModelCard,
    card_from_dict,
    card_from_setting,
    default_card,
    load_card,
    nudenet_card_dict,
)
from services.scanner.model import NsfwModel
from services.scanner.policy import LabelThresholds, PolicyThresholds
from services.scanner.worker import ScanWorker
from services.shared.status import Verdict
from tests.unit.twins import NoBanks

onnx = pytest.importorskip("onnx")
helper = onnx.helper
TensorProto = onnx.TensorProto

SIZE = 8
WHITE, GREY, BLACK = (255, 255, 255), (128, 128, 128), (0, 0, 0)


def _save(model: Any, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _make_model(graph: Any, names: str | None = None) -> Any:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": names})
    return model


def mean_classifier(path: Path, names: str | None = None) -> Path:
    """Two-class classifier: nsfw = 0.1 + 0.8 * mean pixel (0..1); neutral = 1 - nsfw.

    White -> nsfw 0.9, black -> 0.1, mid grey -> ~0.5.
    """
    const = [
        helper.make_tensor("k", TensorProto.FLOAT, [], [0.8]),
        helper.make_tensor("b", TensorProto.FLOAT, [], [0.1]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1]),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape"], ["m"]),
        helper.make_node("Mul", ["m", "k"], ["mk"]),
        helper.make_node("Add", ["mk", "b"], ["nsfw"]),
        helper.make_node("Sub", ["one", "nsfw"], ["neutral"]),
        helper.make_node("Concat", ["neutral", "nsfw"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mean_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2])],
        initializer=const,
    )
    return _save(_make_model(graph, names), path)


def channel_means(path: Path, layout: str) -> Path:
    """Classifier whose three outputs are the per-channel means of its input."""
    shape = [1, 3, SIZE, SIZE] if layout == "NCHW" else [1, SIZE, SIZE, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=axes, keepdims=0)],
        "channel_means",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    return _save(_make_model(graph), path)


def card_dict(model_path: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny-nsfw",
        "path": model_path,
        "kind": "classifier",
        "input_size": SIZE,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "channel_order": "RGB",
        "layout": "NCHW",
        "labels": ["neutral", "nsfw"],
        "thresholds": {"nsfw": {"review": 0.5, "blocked": 0.85}},
    }
    data.update(over)
    return data


def write_card(directory: Path, data: dict[str, Any], name: str = "card.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A card file next to its model, referring to it by a relative path."""
    mean_classifier(tmp_path / "tiny.onnx")
    return write_card(tmp_path, card_dict("tiny.onnx"))


def png(color: tuple[int, int, int], size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "PNG")
    return out.getvalue()


def worker(model: NsfwModel, shadow: NsfwModel | None = None) -> ScanWorker:
    unused = cast(Any, None)
    return ScanWorker(
        images=unused,
        blobs=unused,
        banks=cast(Any, NoBanks()),
        model=model,
        card=model.card,
        publisher=unused,
        thresholds=PolicyThresholds(),
        max_frames=4,
        shadow=shadow,
    )


# --- loading cards ---------------------------------------------------------------------------


def test_card_loads_from_json_with_a_relative_path(tiny: Path) -> None:
    card = load_card(tiny)
    assert card.name == "tiny-nsfw" and card.kind == "classifier"
    assert Path(card.path) == tiny.parent / "tiny.onnx"
    assert card.labels == ("neutral", "nsfw")
    assert card.nsfw_labels == ("nsfw",)
    assert card.thresholds == {"nsfw": LabelThresholds(0.5, 0.85)}
    assert card.resize == "stretch"  # the classifier default
    assert card_from_setting(f"  {tiny}  ") == card


def test_builtin_card_matches_its_json_form(tmp_path: Path) -> None:
    card = default_card()
    assert card.kind == "detector" and card.resize == "letterbox" and card.input_size == 320
    assert set(card.nsfw_labels) == {
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
    }
    assert all(t == LabelThresholds(0.45, 0.8) for t in card.thresholds.values())
    assert load_card(write_card(tmp_path, nudenet_card_dict())) == card
    assert card_from_setting("") == card
    # CHATPIC_REVIEW_THRESHOLD / CHATPIC_BLOCKED_THRESHOLD feed the built-in card
    tuned = card_from_setting("", review=0.3, blocked=0.6)
    assert all(t == LabelThresholds(0.3, 0.6) for t in tuned.thresholds.values())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "segmenter"}, "kind"),
        ({"input_size": "224"}, "input_size"),
        ({"input_size": 0}, "input_size"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.5, 0.0, 0.5]}, "std"),
        ({"channel_order": "RGBA"}, "channel_order"),
        ({"layout": "CHW"}, "layout"),
        ({"resize": "crop"}, "resize"),
        ({"activation": "relu"}, "activation"),
        ({"labels": "nsfw"}, "labels"),
        ({"labels": []}, "labels"),
        ({"labels": ["nsfw", "nsfw"]}, "labels"),
        ({"name": ""}, "name"),
        ({"thresholds": {}}, "thresholds"),
        ({"thresholds": {"porn": {"review": 0.5, "blocked": 0.9}}}, "thresholds"),
        ({"thresholds": {"nsfw": {"review": 0.9, "blocked": 0.5}}}, "thresholds.nsfw"),
        ({"thresholds": {"nsfw": {"review": 0.5}}}, "thresholds.nsfw"),
        ({"thresholds": {"nsfw": {"review": "high", "blocked": 0.9}}}, "thresholds.nsfw.review"),
        ({"thresholds": {"nsfw": {"review": 0.5, "blocked": 1.5}}}, "thresholds.nsfw"),
        ({"path": "missing.onnx"}, "path"),
        ({"path": "nudenet:no-such.onnx"}, "path"),
        ({"path": "nudenet:../320n.onnx"}, "path"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_card_names_the_field(tiny: Path, change: dict[str, Any], field: str) -> None:
    data = {**card_dict("tiny.onnx"), **change}
    path = write_card(tiny.parent, data, "bad.json")
    with pytest.raises(ValueError, match=rf"field '{field}'") as info:
        load_card(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("missing", ["name", "path", "kind", "input_size", "labels", "thresholds"])
def test_missing_required_field_is_named(tiny: Path, missing: str) -> None:
    data = card_dict("tiny.onnx")
    del data[missing]
    with pytest.raises(ValueError, match=rf"field '{missing}': is required"):
        card_from_dict(data, base_dir=tiny.parent)


def test_unreadable_or_malformed_card_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_card(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_card(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        load_card(tmp_path / "list.json")


def test_card_must_fit_the_model(tmp_path: Path) -> None:
    mean_classifier(tmp_path / "m.onnx")
    base = card_dict("m.onnx")
    with pytest.raises(ValueError, match="card says 16"):
        NsfwModel(card_from_dict({**base, "input_size": 16}, tmp_path))
    with pytest.raises(ValueError, match="3 class scores"):
        labels = {"labels": ["a", "nsfw", "c"]}
        NsfwModel(card_from_dict({**base, **labels}, tmp_path))
    with pytest.raises(ValueError, match="3-channel"):
        NsfwModel(card_from_dict({**base, "layout": "NHWC"}, tmp_path))
    with pytest.raises(ValueError, match="box values"):
        NsfwModel(card_from_dict({**base, "kind": "detector"}, tmp_path))
    mean_classifier(tmp_path / "named.onnx", names="{0: 'safe', 1: 'nsfw'}")
    with pytest.raises(ValueError, match="labels differ"):
        NsfwModel(card_from_dict({**base, "path": "named.onnx"}, tmp_path))
    renamed = {"labels": ["safe", "nsfw"], "path": "named.onnx"}
    assert NsfwModel(card_from_dict({**base, **renamed}, tmp_path)).card.labels == ("safe", "nsfw")


# --- scoring with a generated classifier ------------------------------------------------------


def test_classifier_scores_are_a_fixed_function_of_the_mean(tiny: Path) -> None:
    model = NsfwModel(load_card(tiny))
    assert model.score(Image.new("RGB", (40, 30), WHITE))["nsfw"] == pytest.approx(0.9)
    assert model.score(Image.new("RGB", (40, 30), BLACK))["nsfw"] == pytest.approx(0.1)
    black = model.score(Image.new("L", (5, 50), 0))
    assert black == pytest.approx({"neutral": 0.9, "nsfw": 0.1})
    assert len(model.version) == 12


@pytest.mark.parametrize(
    ("color", "verdict", "reasons"),
    [
        (WHITE, Verdict.BLOCKED, ["nsfw_blocked:nsfw"]),
        (GREY, Verdict.REVIEW, ["nsfw_review:nsfw"]),
        (BLACK, Verdict.CLEARED, []),
    ],
)
def test_scan_review_and_blocked_paths(
    tiny: Path, color: tuple[int, int, int], verdict: Verdict, reasons: list[str]
) -> None:
    model = NsfwModel(load_card(tiny))
    decision, record = worker(model).scan(png(color))
    assert decision.verdict is verdict
    assert record["verdict"] == verdict.value and record["reasons"] == reasons
    assert record["model"] == {"name": "tiny-nsfw", "version": model.version}
    assert record["thresholds"]["labels"] == {"nsfw": {"review": 0.5, "blocked": 0.85}}
    assert set(record["scores"]) == {"neutral", "nsfw"}
    assert set(record["timings_ms"]) == {"decode", "hash", "model"}
    assert "shadow" not in record


def test_thresholds_come_from_the_card(tmp_path: Path) -> None:
    mean_classifier(tmp_path / "m.onnx")
    lenient = {"thresholds": {"nsfw": {"review": 0.5, "blocked": 0.95}}}
    model = NsfwModel(card_from_dict({**card_dict("m.onnx"), **lenient}, tmp_path))
    decision, _ = worker(model).scan(png(WHITE))
    assert decision.verdict is Verdict.REVIEW  # 0.9 is under this card's blocked 0.95


def test_preprocessing_follows_layout_channel_order_and_normalisation(tmp_path: Path) -> None:
    red = Image.new("RGB", (SIZE * 2, SIZE), (255, 0, 0))
    three = {"labels": ["c0", "c1", "c2"], "thresholds": {"c0": {"review": 0.5, "blocked": 1.0}}}
    for layout in ("NCHW", "NHWC"):
        channel_means(tmp_path / f"{layout}.onnx", layout)
        base = {**card_dict(f"{layout}.onnx", layout=layout), **three}
        rgb = NsfwModel(card_from_dict(base, tmp_path)).score(red)
        assert rgb == pytest.approx({"c0": 1.0, "c1": 0.0, "c2": 0.0})
        bgr = NsfwModel(card_from_dict({**base, "channel_order": "BGR"}, tmp_path)).score(red)
        assert bgr == pytest.approx({"c0": 0.0, "c1": 0.0, "c2": 1.0})
        norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]}
        scaled = NsfwModel(card_from_dict({**base, **norm}, tmp_path)).score(red)
        assert scaled == pytest.approx({"c0": 2.0, "c1": -1.0, "c2": -0.5})
        # letterbox pads with grey (114) to the right/bottom: half the canvas stays grey
        boxed = NsfwModel(card_from_dict({**base, "resize": "letterbox"}, tmp_path)).score(red)
        assert boxed["c0"] == pytest.approx((1.0 + 114 / 255) / 2, abs=0.02)
        soft = NsfwModel(card_from_dict({**base, "activation": "softmax"}, tmp_path)).score(red)
        assert sum(soft.values()) == pytest.approx(1.0) and soft["c0"] > soft["c1"]
        sig = NsfwModel(card_from_dict({**base, "activation": "sigmoid"}, tmp_path)).score(red)
        assert sig["c1"] == pytest.approx(0.5)


def test_out_of_range_scores_fail_closed(tmp_path: Path) -> None:
    channel_means(tmp_path / "c.onnx", "NCHW")
    data = {
        **card_dict("c.onnx"),
        "labels": ["c0", "c1", "c2"],
        "mean": [0.0, 0.0, 0.0],
        "std": [0.5, 0.5, 0.5],  # white -> 2.0, not a probability
        "thresholds": {"c0": {"review": 0.5, "blocked": 0.9}},
    }
    model = NsfwModel(card_from_dict(data, tmp_path))
    decision, record = worker(model).scan(png(WHITE))
    assert decision.verdict is Verdict.REVIEW
    assert record["reasons"] == ["invalid_score:c0"]


# --- shadow mode ------------------------------------------------------------------------------


def _shadow_card(directory: Path, blocked: float) -> ModelCard:
    data = {
        **card_dict("tiny.onnx", name="tiny-shadow"),
        "thresholds": {"nsfw": {"review": 0.5, "blocked": blocked}},
    }
    return load_card(write_card(directory, data, "shadow.json"))


def test_shadow_is_recorded_and_never_decides(tiny: Path) -> None:
    live = NsfwModel(load_card(tiny))
    shadow = NsfwModel(_shadow_card(tiny.parent, blocked=0.95))
    decision, record = worker(live, shadow).scan(png(WHITE))
    assert decision.verdict is Verdict.BLOCKED  # the live card's verdict
    assert record["verdict"] == "blocked"
    s = record["shadow"]
    assert s["model"] == "tiny-shadow" and s["version"] == live.version
    assert s["verdict"] == "review" and s["live_verdict"] == "blocked"
    assert s["disagrees"] is True
    assert s["scores"]["nsfw"] == pytest.approx(0.9)
    assert s["thresholds"] == {"nsfw": {"review": 0.5, "blocked": 0.95}}
    assert s["reasons"] == ["nsfw_review:nsfw"] and s["timing_ms"] >= 0

    _, agreeing = worker(live, shadow).scan(png(BLACK))
    assert agreeing["shadow"]["verdict"] == "cleared"
    assert agreeing["shadow"]["disagrees"] is False


def test_a_failing_shadow_does_not_touch_the_live_verdict(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = NsfwModel(load_card(tiny))
    shadow = NsfwModel(_shadow_card(tiny.parent, blocked=0.95))

    def boom(frames: object) -> dict[str, float]:
        raise RuntimeError("shadow exploded")

    monkeypatch.setattr(shadow, "score_frames", boom)
    decision, record = worker(live, shadow).scan(png(GREY))
    assert decision.verdict is Verdict.REVIEW
    assert record["shadow"]["verdict"] is None and record["shadow"]["disagrees"] is False
    assert "shadow exploded" in record["shadow"]["error"]


def test_undecodable_input_skips_both_models(tiny: Path) -> None:
    live = NsfwModel(load_card(tiny))
    decision, record = worker(live, live).scan(b"not an image")
    assert decision.reasons == ("undecodable",) and "shadow" not in record


def test_nan_from_the_model_fails_closed(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = NsfwModel(load_card(tiny))
    monkeypatch.setattr(model, "score_frames", lambda frames: {"neutral": 0.5, "nsfw": math.nan})
    decision, _ = worker(model).scan(png(BLACK))
    assert decision.verdict is Verdict.REVIEW and decision.reasons == ("invalid_score:nsfw",)
