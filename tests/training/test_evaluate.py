"""The `xmc-eval` CLI and the evaluation API, on a tiny artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.training.fakes import SIZE, TinyFeatures
from training import evaluate
from training.shapes.classifier import (
    ShapeClassifier,
    cache_path,
    save_classifier,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs on one intra-op thread (see tests/conftest.py)."""


# --- the xmc-eval CLI ----------------------------------------------------------------------


def test_cli_faithfulness_writes_json_and_grid(
    tiny_artifact: Path,
    shapes_root: Path,
    classifier: ShapeClassifier,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    save_classifier(classifier, cache_path(tmp_path / "cache", SIZE))
    out = tmp_path / "out"
    code = evaluate.main(
        [
            "faithfulness",
            "--model",
            str(tiny_artifact),
            "--data",
            str(shapes_root),
            "--split",
            "val",
            "--num",
            "6",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
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


def test_faithfulness_api_is_deterministic(
    tiny_artifact: Path, shapes_root: Path, classifier: ShapeClassifier, tmp_path: Path
) -> None:
    from models import XMCGANPipeline

    save_classifier(classifier, cache_path(tmp_path, SIZE))
    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    runs = [
        evaluate.faithfulness(
            pipeline,
            shapes_root,
            "val",
            num=4,
            cache_dir=tmp_path,
            reference=False,
            return_images=True,
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0]["images"]["generated"], runs[1]["images"]["generated"])
    assert runs[0]["generated"] == runs[1]["generated"]


def test_feature_metric_api_with_a_tiny_network(tiny_artifact: Path, shapes_root: Path) -> None:
    from models import XMCGANPipeline

    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    result = evaluate.feature_metric(pipeline, shapes_root, "val", TinyFeatures(), "fid", num=4)
    assert result["num_images"] == 4 and result["fid"] > 0.0


def test_cli_errors_are_one_line(
    tmp_path: Path, shapes_root: Path, tiny_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = evaluate.main(
        [
            "faithfulness",
            "--data",
            str(tmp_path / "nowhere"),
            "--model",
            str(tiny_artifact),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 2 and "annotations file not found" in capsys.readouterr().err
    code = evaluate.main(
        [
            "fid",
            "--model",
            str(tiny_artifact),
            "--data",
            str(shapes_root),
            "--inception-weights",
            str(tmp_path / "none.pth"),
            "--quiet",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Inception weights not found" in err and "Traceback" not in err


def test_complete_captions_name_every_scored_attribute(shapes_root: Path) -> None:
    from training.metrics.sampling import complete_captions, names_every_attribute

    records = evaluate.load_split(shapes_root, "val", need_attributes=True)
    chosen = complete_captions(records, seed=0)
    assert all(names_every_attribute(c, r.attributes) for c, r in zip(chosen, records, strict=True))
    drawn = evaluate.pick_captions(records, seed=0)
    assert not all(  # the spec's draw leaves some attribute unnamed somewhere
        names_every_attribute(c, r.attributes) for c, r in zip(drawn, records, strict=True)
    )
    one = {"background": "black", "objects": [{"color": "red", "shape": "circle"}]}
    assert names_every_attribute("a small red circle on a black background", one)
    assert not names_every_attribute("there is a red circle", one)
    two = {
        **one,
        "objects": [*one["objects"], {"color": "blue", "shape": "square"}],
        "relation": "left of",
    }
    assert names_every_attribute("a red circle left of a blue square on a black background", two)
    assert names_every_attribute("black background , a blue square right of a red circle", two)
    assert not names_every_attribute("black background , a red circle and a blue square", two)


def test_cli_faithfulness_with_complete_captions(
    tiny_artifact: Path, shapes_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    code = evaluate.main(
        [
            "faithfulness",
            "--model",
            str(tiny_artifact),
            "--data",
            str(shapes_root),
            "--split",
            "val",
            "--num",
            "4",
            "--captions",
            "complete",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads((out / "faithfulness_val_complete.json").read_text())
    assert result["captions"] == "complete" and result["real"]["mean"] == 1.0


# --- whole-caption figures and fresh scenes ------------------------------------------------

TODAYS_KEYS = {"background", "color", "shape", "relation", "mean", "counts", "num_images"}


def _faithfulness_cli(
    tiny_artifact: Path, shapes_root: Path, cache: Path, out: Path, *extra: str
) -> int:
    return evaluate.main(
        [
            "faithfulness",
            "--model",
            str(tiny_artifact),
            "--data",
            str(shapes_root),
            "--num",
            "6",
            "--batch-size",
            "6",
            "--device",
            "cpu",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_cli_scores_fresh_two_object_scenes(
    tiny_artifact: Path,
    shapes_root: Path,
    classifier: ShapeClassifier,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from training.shapes.scenes import HELDOUT_PAIRS
    from training.shapes.sources import fresh_scenes

    save_classifier(classifier, cache_path(tmp_path / "cache", SIZE))
    args = ("--split", "test_heldout", "--fresh-seed", "3", "--objects", "2")
    code = _faithfulness_cli(tiny_artifact, shapes_root, tmp_path / "cache", tmp_path, *args)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "whole caption" in printed and "fresh test_heldout-like scenes of seed 3" in printed
    result = json.loads((tmp_path / "faithfulness_test_heldout_fresh3_objects2.json").read_text())
    assert result["fresh_seed"] == 3 and result["objects"] == 2 and result["num_images"] == 6
    real, generated = result["real"], result["generated"]
    assert TODAYS_KEYS <= set(generated)
    # Six two-object scenes: two colour, two shape and one relation check each.
    assert real["counts"] == {"background": 6, "color": 12, "shape": 12, "relation": 6}
    assert real["whole_caption"] == 1.0 and real["two_objects"]["binding"] == 1.0
    assert real["one_object"]["num_images"] == 0
    for key in ("whole_caption", "named"):
        assert key in generated
    value = generated["two_objects"]["whole_caption"]
    assert 0.0 <= value <= generated["two_objects"]["binding"] <= 1.0
    # The scenes scored: the benchmark of seed 3's, new, each with a held-out pair.
    records, real_images = evaluate.scene_records(
        shapes_root, "test_heldout", 6, evaluate.SceneSource(3, 2), SIZE
    )
    fresh = [scene for _, scene, _ in fresh_scenes("test_heldout", 6, SIZE, 3, objects=2)]
    assert [r.attributes for r in records] == fresh
    split = [r.attributes for r in evaluate.load_split(shapes_root, "test_heldout")]
    assert not any(scene in split for scene in fresh)
    assert all(
        any((o["color"], o["shape"]) in HELDOUT_PAIRS for o in scene["objects"]) for scene in fresh
    )
    assert real_images.shape == (6, 3, SIZE, SIZE) and real_images.dtype == torch.uint8


def test_faithfulness_on_the_split_keeps_its_keys_and_splits_by_objects(
    tiny_artifact: Path, shapes_root: Path, classifier: ShapeClassifier, tmp_path: Path
) -> None:
    from models import XMCGANPipeline

    save_classifier(classifier, cache_path(tmp_path, SIZE))
    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    whole = evaluate.faithfulness(pipeline, shapes_root, "val", cache_dir=tmp_path)
    records = evaluate.load_split(shapes_root, "val")
    two = sum(len(r.attributes["objects"]) == 2 for r in records)
    assert 0 < two < len(records)
    assert TODAYS_KEYS <= set(whole["generated"]) and whole["real"]["whole_caption"] == 1.0
    assert whole["real"]["two_objects"]["num_images"] == two
    only_two = evaluate.faithfulness(
        pipeline,
        shapes_root,
        "val",
        cache_dir=tmp_path,
        reference=False,
        source=evaluate.SceneSource(objects=2),
    )
    assert only_two["num_images"] == two
    assert only_two["generated"]["counts"]["relation"] == two


def test_fresh_scenes_refuse_the_benchmarks_own_seed(
    tiny_artifact: Path, shapes_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _faithfulness_cli(tiny_artifact, shapes_root, tmp_path, tmp_path, "--fresh-seed", "0")
    err = capsys.readouterr().err
    assert code == 2 and "--fresh-seed 0 is the seed of the benchmark" in err
    assert "Traceback" not in err
