"""Evaluation: the faithfulness scorer, its shape classifier, FID/KID plumbing, CLIP
R-precision and the `xmc-eval` CLI. Everything at 32 px, on one thread."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from training import evaluate, feature_metrics, segmentation
from training.faithfulness import AttributesError, FoundObject, match_objects, score_images
from training.inception import FIDInceptionV3, InceptionWeightsError, resize_like_tensorflow1
from training.shape_classifier import (
    ShapeClassifier,
    ShapeClassifierConfig,
    ShapeClassifierError,
    ShapeCNN,
    cache_path,
    load_or_train,
    save_classifier,
    train_shape_classifier,
)
from training.shapes import PALETTE_OBJECTS, render_scene, sample_scene

SIZE = 32


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs on one intra-op thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def classifier() -> ShapeClassifier:
    """The 32 px shape classifier, trained on ~450 real object crops (a few seconds)."""
    return train_shape_classifier(ShapeClassifierConfig(size=SIZE, train_scenes=300,
                                                        gate_scenes=200))


@pytest.fixture(scope="module")
def scenes() -> list[dict[str, Any]]:
    """160 real scenes, val-like and held-out alike, with every relation."""
    return [sample_scene(random.Random(f"test-evaluate/{i}"), SIZE, heldout=i % 2 == 0)
            for i in range(160)]


def _render(scenes: list[dict[str, Any]]) -> list[Image.Image]:
    return [render_scene(scene, SIZE) for scene in scenes]


# --- the shape classifier ------------------------------------------------------------------

def test_classifier_passes_the_gate_on_real_val_objects(classifier: ShapeClassifier) -> None:
    assert classifier.val_accuracy >= 0.98
    classifier.check_gate()


def test_classifier_training_is_deterministic() -> None:
    config = ShapeClassifierConfig(size=SIZE, train_scenes=24, gate_scenes=8, epochs=1)
    first, second = train_shape_classifier(config), train_shape_classifier(config)
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, second.network.state_dict()[name]), name
    assert first.val_accuracy == second.val_accuracy


def test_classifier_cache_is_written_and_reused(tmp_path: Path, classifier: ShapeClassifier,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    save_classifier(classifier, cache_path(tmp_path, SIZE))
    assert (tmp_path / "shape_cnn_32.safetensors").is_file()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached classifier must not be retrained")

    monkeypatch.setattr("training.shape_classifier.train_shape_classifier", no_training)
    loaded = load_or_train(SIZE, cache_dir=tmp_path)
    assert loaded.val_accuracy == classifier.val_accuracy
    for name, tensor in classifier.network.state_dict().items():
        assert torch.equal(tensor, loaded.network.state_dict()[name]), name


def test_scorer_refuses_shapes_below_the_gate(scenes: list[dict[str, Any]]) -> None:
    weak = ShapeClassifier(ShapeCNN(), SIZE, val_accuracy=0.9)
    with pytest.raises(ShapeClassifierError, match="98%"):
        score_images(_render(scenes[:2]), scenes[:2], SIZE, shape_classifier=weak)


# --- the faithfulness scorer ---------------------------------------------------------------

def test_real_renders_score_at_the_ceiling(classifier: ShapeClassifier,
                                           scenes: list[dict[str, Any]]) -> None:
    result = score_images(_render(scenes), scenes, SIZE, shape_classifier=classifier)
    assert result["mean"] >= 0.97
    for attribute in ("background", "color", "shape", "relation"):
        assert result[attribute] >= 0.97, (attribute, result)
    objects = sum(len(scene["objects"]) for scene in scenes)
    pairs = sum(len(scene["objects"]) == 2 for scene in scenes)
    assert result["counts"] == {"background": len(scenes), "color": objects, "shape": objects,
                                "relation": pairs}
    assert result["num_images"] == len(scenes)


def test_tensor_and_pil_inputs_score_the_same(classifier: ShapeClassifier,
                                              scenes: list[dict[str, Any]]) -> None:
    images = _render(scenes[:20])
    tensor = torch.stack([torch.from_numpy(np.asarray(image).copy())
                          .permute(2, 0, 1) for image in images]).float() / 255
    from_pil = score_images(images, scenes[:20], SIZE, shape_classifier=classifier)
    from_tensor = score_images(tensor, scenes[:20], SIZE, shape_classifier=classifier)
    assert from_pil == from_tensor


def test_noise_scores_low(classifier: ShapeClassifier, scenes: list[dict[str, Any]]) -> None:
    noise = torch.rand(len(scenes), 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    assert score_images(noise, scenes, SIZE, shape_classifier=classifier)["mean"] < 0.4


def test_other_colours_fail_the_colour_check(classifier: ShapeClassifier,
                                             scenes: list[dict[str, Any]]) -> None:
    names = list(PALETTE_OBJECTS)
    recoloured = [{**scene, "objects": [{**obj, "color": names[(names.index(obj["color"]) + 3) % 8]}
                                        for obj in scene["objects"]]} for scene in scenes]
    result = score_images(_render(recoloured), scenes, SIZE, shape_classifier=classifier)
    assert result["color"] < 0.1
    assert result["shape"] >= 0.97 and result["background"] >= 0.97


def test_swapped_colours_fail_the_colour_check(classifier: ShapeClassifier,
                                               scenes: list[dict[str, Any]]) -> None:
    # Two objects of different shapes and colours, drawn with each other's colour.
    chosen = [scene for scene in scenes if len(scene["objects"]) == 2
              and len({obj["shape"] for obj in scene["objects"]}) == 2
              and len({obj["color"] for obj in scene["objects"]}) == 2]
    swapped = [{**scene, "objects": [{**first, "color": second["color"]},
                                     {**second, "color": first["color"]}]}
               for scene in chosen for first, second in [scene["objects"]]]
    assert len(chosen) >= 10
    result = score_images(_render(swapped), chosen, SIZE, shape_classifier=classifier)
    assert result["color"] == 0.0
    assert result["shape"] >= 0.97


def test_mirrored_images_fail_the_relation(classifier: ShapeClassifier,
                                           scenes: list[dict[str, Any]]) -> None:
    sideways = [scene for scene in scenes if scene["relation"] in ("left of", "right of")]
    assert len(sideways) >= 10
    mirrored = [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in _render(sideways)]
    result = score_images(mirrored, sideways, SIZE, shape_classifier=classifier)
    assert result["relation"] == 0.0
    assert result["color"] >= 0.97 and result["shape"] >= 0.97


def test_a_missing_object_fails_its_checks(classifier: ShapeClassifier,
                                           scenes: list[dict[str, Any]]) -> None:
    pairs = [scene for scene in scenes if len(scene["objects"]) == 2][:10]
    first_only = [{**scene, "objects": scene["objects"][:1], "relation": None} for scene in pairs]
    result = score_images(_render(first_only), pairs, SIZE, shape_classifier=classifier,
                          return_details=True)
    for checks in result["per_image"]:
        assert checks["background"] == [True]
        assert checks["color"] == [True, False] and checks["shape"] == [True, False]
        assert checks["relation"] == [False]
    assert result["mean"] == pytest.approx((10 + 10 + 10) / (10 * 6))


def test_indistinguishable_objects_fail_the_relation() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    left = FoundObject(mask, "red", "circle", x=0.0, y=1.0)
    right = FoundObject(mask, "red", "circle", x=3.0, y=1.0)
    expected = [{"color": "red", "shape": "circle"}, {"color": "blue", "shape": "circle"}]
    matched, sure = match_objects(expected, [right, left], "left of")
    assert matched == [left, right] and not sure  # tie: halves decide, relation unreadable
    expected[1]["color"] = "red"
    expected[1]["shape"] = "square"
    square = FoundObject(mask, "red", "square", x=0.0, y=1.0)
    matched, sure = match_objects(expected, [right, square], "left of")
    assert matched == [right, square] and sure  # appearance decides, whatever the position


def test_components_are_eight_connected() -> None:
    masks = torch.zeros(1, 6, 6, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    masks[0, 2, 2] = True  # touches the first blob diagonally
    masks[0, 4:6, 4:6] = True
    labels = segmentation.label_components(masks)[0]
    assert labels[0, 0] == labels[2, 2] != labels[5, 5]
    assert len(labels.unique()) == 3  # two components and the background


def test_bad_inputs_raise_clear_errors(classifier: ShapeClassifier,
                                       scenes: list[dict[str, Any]]) -> None:
    with pytest.raises(segmentation.ImageInputError, match="expected 32x32"):
        score_images(torch.rand(1, 3, 16, 16), scenes[:1], SIZE, shape_classifier=classifier)
    with pytest.raises(AttributesError, match="2 images but 1"):
        score_images(torch.rand(2, 3, SIZE, SIZE), scenes[:1], SIZE, shape_classifier=classifier)
    with pytest.raises(AttributesError, match="background"):
        score_images(torch.rand(1, 3, SIZE, SIZE), [{"objects": []}], SIZE,
                     shape_classifier=classifier)


# --- FID / KID ------------------------------------------------------------------------------

class TinyFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 16): a fixed random projection of 4x4 average colours."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.projection = nn.Linear(48, 16)
        nn.init.normal_(self.projection.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.float() / 255, 4)  # (B, 3, 4, 4)
        return self.projection(pooled.flatten(1))


def _image_set(seed: int, count: int = 64, shift: float = 0.0) -> torch.Tensor:
    images = torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return ((images * 0.6 + shift).clamp(0, 1) * 255).round().to(torch.uint8)


def test_fid_is_zero_against_itself_and_positive_against_a_shift() -> None:
    real = _image_set(0)
    same = feature_metrics.frechet_distance(real, real, TinyFeatures())
    shifted = feature_metrics.frechet_distance(real, _image_set(1, shift=0.3), TinyFeatures())
    assert abs(same) < 1e-3
    assert shifted > 1.0


def test_kid_separates_a_shifted_set() -> None:
    real = _image_set(0)
    similar, _ = feature_metrics.kernel_distance(real, _image_set(1), TinyFeatures(), subsets=10,
                                                 subset_size=32)
    shifted, _ = feature_metrics.kernel_distance(real, _image_set(1, shift=0.3), TinyFeatures(),
                                                 subsets=10, subset_size=32)
    assert shifted > 0.05
    assert abs(similar) < shifted / 10


def test_resize_matches_tensorflow1_bilinear() -> None:
    # TF1 samples output pixel i at input position i * in / out, clamped at the edge.
    row = torch.tensor([[[[0.0, 10.0]]]])  # (1, 1, 1, 2)
    assert resize_like_tensorflow1(row, 4)[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]


def test_inception_loads_a_state_dict_file(tmp_path: Path) -> None:
    path = tmp_path / "pt_inception.pth"
    torch.save(FIDInceptionV3().state_dict(), path)
    network = FIDInceptionV3.from_file(path)
    with torch.no_grad():
        features = network(torch.randint(0, 256, (1, 3, SIZE, SIZE), dtype=torch.uint8))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InceptionWeightsError, match="does not hold the FID Inception"):
        FIDInceptionV3.from_file(tmp_path / "other.pth")
    with pytest.raises(InceptionWeightsError, match="not found"):
        FIDInceptionV3.from_file(tmp_path / "missing.pth")


# --- CLIP R-precision ----------------------------------------------------------------------

def test_r_precision_counts_true_captions_ranked_first() -> None:
    texts = torch.eye(4)  # four orthogonal captions
    candidates = torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 0]])
    assert feature_metrics.r_precision(texts[:3], texts, candidates) == 1.0
    assert feature_metrics.r_precision(texts[[1, 2, 3]], texts, candidates) == 0.0
    assert feature_metrics.r_precision(texts[[0, 0, 2]], texts, candidates) == pytest.approx(2 / 3)


def test_candidates_exclude_the_image_own_captions() -> None:
    pool = [(image, f"caption {image} {k}") for image in range(30) for k in range(5)]
    texts, rows = feature_metrics.candidate_captions(["caption 0 0"], [0], pool, count=100)
    assert rows.shape == (1, 100) and texts[rows[0, 0]] == "caption 0 0"
    assert not any(texts[i].startswith("caption 0 ") for i in rows[0, 1:].tolist())
    assert len(set(rows[0].tolist())) == 100


def _tiny_clip(directory: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({letter: 2 + i for i, letter in enumerate(string.ascii_lowercase)})
    vocab.update({f"{letter}</w>": 28 + i for i, letter in enumerate(string.ascii_lowercase)})
    layers = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**layers, "vocab_size": len(vocab), "max_position_embeddings": 64,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**layers, "image_size": SIZE, "patch_size": 8}, projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": SIZE},
                                                     crop_size={"height": SIZE, "width": SIZE}),
                  tokenizer=CLIPTokenizer(vocab=vocab, merges=[])).save_pretrained(directory)
    return directory


def test_clip_encoders_from_a_local_checkpoint(tmp_path: Path) -> None:
    encode_images, encode_texts = feature_metrics.clip_encoders(_tiny_clip(tmp_path / "clip"))
    texts = encode_texts(["a red circle", "a blue square", "a red circle"])
    assert texts.shape == (3, 8)
    assert torch.equal(texts[0], texts[2]) and not torch.allclose(texts[0], texts[1])
    assert encode_texts(["a blue square " * 20]).shape == (1, 8)  # truncated to 64 positions
    images = _image_set(0, count=3)
    assert encode_images(images).shape == (3, 8)
    assert torch.allclose(encode_images(images[:1]), encode_images(images)[:1], atol=1e-5)


# --- the xmc-eval CLI ----------------------------------------------------------------------

def test_cli_faithfulness_writes_json_and_grid(tiny_artifact: Path, shapes_root: Path,
                                               classifier: ShapeClassifier, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    save_classifier(classifier, cache_path(tmp_path / "cache", SIZE))
    out = tmp_path / "out"
    code = evaluate.main(["faithfulness", "--model", str(tiny_artifact), "--data", str(shapes_root),
                          "--split", "val", "--num", "6", "--batch-size", "4", "--device", "cpu",
                          "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "real (ceiling)" in printed and "untrained (floor)" in printed
    result = json.loads((out / "faithfulness_val.json").read_text())
    assert result["num_images"] == 6 and result["model_id"] == "xmc-tiny"
    assert result["real"]["mean"] >= 0.97
    for key in ("generated", "untrained"):
        assert 0.0 <= result[key]["mean"] <= 1.0
        assert result[key]["counts"] == result["real"]["counts"]
    grid = Image.open(out / "faithfulness_val_samples.png")
    assert grid.size == (8 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)
    assert result["grid"]["rows"] == ["real", "generated", "untrained"]


def test_faithfulness_api_is_deterministic(tiny_artifact: Path, shapes_root: Path,
                                           classifier: ShapeClassifier, tmp_path: Path) -> None:
    from models import XMCGANPipeline

    save_classifier(classifier, cache_path(tmp_path, SIZE))
    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    runs = [evaluate.faithfulness(pipeline, shapes_root, "val", num=4, cache_dir=tmp_path,
                                  reference=False, return_images=True) for _ in range(2)]
    assert torch.equal(runs[0]["images"]["generated"], runs[1]["images"]["generated"])
    assert runs[0]["generated"] == runs[1]["generated"]


def test_feature_metric_api_with_a_tiny_network(tiny_artifact: Path, shapes_root: Path) -> None:
    from models import XMCGANPipeline

    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    result = evaluate.feature_metric(pipeline, shapes_root, "val", TinyFeatures(), "fid", num=4)
    assert result["num_images"] == 4 and result["fid"] > 0.0


def test_cli_errors_are_one_line(tmp_path: Path, shapes_root: Path, tiny_artifact: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate.main(["faithfulness", "--data", str(tmp_path / "nowhere"), "--model",
                          str(tiny_artifact), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2 and "annotations file not found" in capsys.readouterr().err
    code = evaluate.main(["fid", "--model", str(tiny_artifact), "--data", str(shapes_root),
                          "--inception-weights", str(tmp_path / "none.pth"), "--quiet",
                          "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Inception weights not found" in err and "Traceback" not in err
