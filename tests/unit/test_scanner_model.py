"""The NSFW scorer around nudenet's bundled 320n.onnx, run for real on corpus images."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.scanner.imaging import frames_for_scan, load_normalized
from services.scanner.model import (
    ModelCard,
    NsfwModel,
    default_card,
    letterbox,
    merge_max,
    nsfw_score,
)
from services.scanner.policy import LabelThresholds, PolicyThresholds, label_verdict
from services.shared.status import Verdict
from tests.unit.corpus import corpus_bytes, corpus_path

BENIGN = ("DSCN0010.jpg", "DSCN0021.jpg", "Landscape_1.jpg", "iptc.jpg", "junk_jpeg_header.jpg")


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return default_card()


@pytest.fixture(scope="module")
def model(card: ModelCard) -> Iterator[NsfwModel]:
    yield NsfwModel(card, threads=1)


def test_card_points_at_the_model_inside_nudenet(card: ModelCard) -> None:
    spec = importlib.util.find_spec("nudenet")
    assert spec is not None and spec.submodule_search_locations
    package_dirs = {Path(p).resolve() for p in spec.submodule_search_locations}
    path = Path(card.path)
    assert path.name == "320n.onnx" and path.is_file()
    assert path.resolve().parent in package_dirs
    assert card.input_size == 320
    assert len(card.labels) == 18
    assert set(card.nsfw_labels) == {
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
    }


def test_version_is_the_file_hash_prefix(model: NsfwModel, card: ModelCard) -> None:
    digest = hashlib.sha256(Path(card.path).read_bytes()).hexdigest()
    assert model.version == digest[:12]
    assert len(model.version) == 12


def test_input_and_output_layout_read_from_the_model(model: NsfwModel, card: ModelCard) -> None:
    assert model.input_name == "images"
    assert len(model.input_shape) == 4 and model.input_shape[1] == 3
    assert model.output_name == "output0"
    assert len(model.output_shape) == 3
    assert model.output_shape[1] == 4 + len(card.labels) == 22


def test_card_that_disagrees_with_the_model_is_rejected(card: ModelCard) -> None:
    swapped = (card.labels[1], card.labels[0], *card.labels[2:])
    with pytest.raises(ValueError, match="labels"):
        NsfwModel(dataclasses.replace(card, labels=swapped))
    with pytest.raises(ValueError, match="class scores"):
        NsfwModel(dataclasses.replace(card, labels=card.labels[:-1]))
    with pytest.raises(ValueError, match="thresholds"):
        dataclasses.replace(card, thresholds={"NOT_A_LABEL": LabelThresholds(0.1, 0.2)})
    with pytest.raises(ValueError, match="classifier output"):
        NsfwModel(dataclasses.replace(card, kind="classifier"))


@pytest.mark.parametrize("name", BENIGN)
def test_benign_photos_score_below_review(model: NsfwModel, card: ModelCard, name: str) -> None:
    scores = model.score(load_normalized(corpus_bytes(name)))
    assert set(scores) == set(card.labels)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    review = PolicyThresholds().review
    assert all(scores[label] < review for label in card.nsfw_labels)
    assert nsfw_score(scores, card) < review
    assert label_verdict(scores, card.thresholds) == (Verdict.CLEARED, [])


def test_scores_match_nudenet_reference_on_a_detection(model: NsfwModel) -> None:
    """Cross-check tensor layout and post-processing against nudenet's own detector.

    The roses in xmp_tags_orientation.png are (wrongly) detected as FEET_COVERED, which gives a
    non-trivial score to compare. nudenet's detect() feeds the network BGR with black padding
    (its cvtColor(RGBA2BGR) on a BGR image plus blobFromImage(swapRB=True)); with the same
    channel order our score lands close to its score. With the correct RGB order it differs.
    """
    from nudenet import NudeDetector  # slow import (cv2); only here

    path = corpus_path("xmp_tags_orientation.png")
    reference = {d["class"]: d["score"] for d in NudeDetector().detect(str(path))}
    assert "FEET_COVERED" in reference
    with Image.open(path) as src:
        rgb = src.convert("RGB")  # no orientation, alpha dropped: what cv2.imread sees
    bgr = Image.fromarray(np.asarray(rgb)[..., ::-1].copy(), "RGB")
    ours_bgr = model.score(bgr)["FEET_COVERED"]
    assert abs(ours_bgr - reference["FEET_COVERED"]) < 0.05
    assert abs(model.score(rgb)["FEET_COVERED"] - ours_bgr) > 0.1


def test_score_frames_takes_the_worst_frame(model: NsfwModel, card: ModelCard) -> None:
    frames = frames_for_scan(corpus_bytes("iss634.gif"), max_frames=4)
    per_frame = [model.score(f) for f in frames]
    combined = model.score_frames(frames)
    for label in card.labels:
        assert combined[label] == max(s[label] for s in per_frame)
    with pytest.raises(ValueError):
        model.score_frames([])


def test_score_is_deterministic_and_content_dependent(model: NsfwModel) -> None:
    a = load_normalized(corpus_bytes("DSCN0010.jpg"))
    b = load_normalized(corpus_bytes("xmp_tags_orientation.png"))
    assert model.score(a) == model.score(a)
    assert model.score(a) != model.score(b)


def test_letterbox_keeps_aspect_top_left() -> None:
    img = Image.new("RGB", (640, 480), (10, 200, 30))
    boxed = letterbox(img, 320)
    assert boxed.size == (320, 320)
    arr = np.asarray(boxed)
    assert (arr[:240] == (10, 200, 30)).all()
    assert (arr[240:] == 114).all()
    tall = np.asarray(letterbox(Image.new("RGB", (50, 100), (0, 0, 0)), 320))
    assert (tall[:, :160] == 0).all() and (tall[:, 160:] == 114).all()


def test_nsfw_score_and_merge(card: ModelCard) -> None:
    scores = dict.fromkeys(card.labels, 0.1)
    scores["FACE_FEMALE"] = 0.99  # not an nsfw label
    scores["ANUS_EXPOSED"] = 0.7
    assert nsfw_score(scores, card) == 0.7
    scores["MALE_GENITALIA_EXPOSED"] = math.nan
    assert math.isnan(nsfw_score(scores, card))
    del scores["MALE_GENITALIA_EXPOSED"]
    assert math.isnan(nsfw_score(scores, card))
    merged = merge_max([{"A": 0.2, "B": math.nan}, {"A": 0.5, "B": 0.9}])
    assert merged["A"] == 0.5 and math.isnan(merged["B"])
