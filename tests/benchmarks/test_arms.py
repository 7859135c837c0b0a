"""benchmarks.arms: every new checkpoint of an arm scored once, with the figures it is picked by."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def classifier(single_thread: None) -> Any:
    from training.shapes.classifier import ShapeClassifierConfig, train_shape_classifier

    return train_shape_classifier(ShapeClassifierConfig(size=32, train_scenes=300, gate_scenes=200))


def test_an_arm_is_scored_checkpoint_by_checkpoint_and_only_once(
    tmp_path: Path, classifier: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.arms import main
    from training.cli import train_main
    from training.shapes.classifier import cache_path, save_classifier
    from training.shapes.scenes import make_benchmark

    save_classifier(classifier, cache_path(tmp_path, 32))
    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=16, n_val=12, n_test_heldout=8, progress=False)
    run = tmp_path / "run"
    argv = [str(run), "--preset", "tiny", "--data", str(data), "--batch-size", "4"]
    for steps in ("1", "2"):
        assert train_main([*argv, "--steps", steps, "--no-progress", "--num-workers", "0"]) == 0
    out = tmp_path / "arms.json"
    score = ["score", f"tiny={run}", "--data", str(data), "--out", str(out), "--num", "12"]
    score += ["--probe-num", "2", "--cache-dir", str(tmp_path)]
    assert main(score) == 0
    rows = json.loads(out.read_text())
    assert [(r["arm"], r["step"], r["images"]) for r in rows] == [("tiny", 1, 4), ("tiny", 2, 8)]
    for row in rows:
        for split in ("val", "test_heldout"):
            named = row[split]["one_object_named"]  # background, colour, shape apart
            shapes = row[split]["shapes"]  # by object size, and what was drawn instead
            assert set(shapes) == {"one_object", "two_objects"}
            assert set(shapes["one_object"]["by_size"]) <= {"small", "large"}
            figures = {
                k: v for k, v in row[split].items() if k not in ("one_object_named", "shapes")
            }
            figures |= {f"one_object_{k}": v for k, v in named.items()}
            assert set(figures) >= {"one_object_shape", "one_object_color", "one_object_whole"}
            assert all(v is None or 0.0 <= v <= 1.0 for v in figures.values()), figures
            assert {"binding", "both_colours", "both_shapes"} <= set(row[split])
        assert 0 <= row["headline_right"] <= 16
        probed = {"relation", "binding", "shape_binding", "relation_word", "binding_word"}
        assert set(row["d_probe"]) == probed
        assert all(v is None or 0.0 <= v <= 1.0 for v in row["d_probe"].values()), row
        assert row["d_probe"]["relation"] is not None
    capsys.readouterr()
    assert main(score) == 0  # nothing new: nothing scored again
    assert json.loads(out.read_text()) == rows
    older = [{k: v for k, v in r.items() if k != "d_probe"} for r in rows]
    older[1]["d_probe"] = {"relation": 0.5, "binding": 0.5}  # before the shapes edit
    out.write_text(json.dumps(older))  # rows scored before D was probed get the probe added
    assert main(score) == 0
    assert json.loads(out.read_text()) == rows
    capsys.readouterr()
    assert main(["table", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| tiny | ") == 2  # the two rows
    assert "D on real: relation" in printed
    for line in printed.splitlines():
        if line.startswith("| tiny"):  # D's relation and binding, as probed, end the row
            probe = rows[0 if "| 4 |" in line else 1]["d_probe"]
            cells = line.strip("| ").split(" | ")[-3:]
            want = [probe[k] for k in ("relation", "binding", "shape_binding")]
            assert cells == [("–" if v is None else f"{v:.3f}") for v in want]
    with pytest.raises(SystemExit):
        main(["score", f"tiny={tmp_path / 'missing'}", "--data", str(data), "--out", str(out)])
    # what a restart needs: G (EMA) and D, which a new run then starts from
    from models.discriminator import Discriminator
    from training.checkpoint import load_checkpoint

    assert main(["save-state", str(run / "checkpoint-0000002.pt"), str(tmp_path / "state")]) == 0
    assert json.loads((tmp_path / "state" / "state.json").read_text())["images"] == 8
    saved = Discriminator.from_pretrained(tmp_path / "state" / "discriminator").state_dict()
    trained = load_checkpoint(run / "checkpoint-0000002.pt")["discriminator"]
    assert all(torch.equal(saved[k], trained[k]) for k in trained)
    restart = [str(tmp_path / "again"), "--preset", "tiny", "--data", str(data)]
    restart += ["--set", f"run.init_generator={tmp_path / 'state' / 'generator'}"]
    restart += ["--set", f"run.init_discriminator={tmp_path / 'state' / 'discriminator'}"]
    assert train_main([*restart, "--steps", "1", "--batch-size", "4", "--no-progress"]) == 0
    # a fork's rows count images from the bundle: the state's 8, then its own 4
    forked = ["score", f"fork={tmp_path / 'again'}", "--data", str(data), "--out", str(out)]
    forked += ["--num", "12", "--probe-num", "2", "--cache-dir", str(tmp_path)]
    assert main(forked) == 0
    (fork,) = [r for r in json.loads(out.read_text()) if r["arm"] == "fork"]
    assert (fork["step"], fork["images"], fork["forked_at"]) == (1, 12, 8)
    assert fork["forked_from"] == "run"  # the folder its state was saved from
    from benchmarks.arms import start_images
    from benchmarks.arms_drawing import _parent

    assert start_images(load_checkpoint(run / "checkpoint-0000002.pt")["config"]) == 0
    everything = json.loads(out.read_text())
    assert _parent(everything, fork)["step"] == 2  # its curve starts where it forked
    assert _parent(everything, rows[0]) is None
    fork_state = tmp_path / "fork-state"
    assert (
        main(["save-state", str(tmp_path / "again" / "checkpoint-0000001.pt"), str(fork_state)])
        == 0
    )
    saved = json.loads((fork_state / "state.json").read_text())
    assert saved["images"] == 12 and saved["images_total"] == 12  # the lineage's, from scratch
    exported = json.loads((fork_state / "generator" / "config.json").read_text())["training"]
    assert exported["images_total"] == 12 and "wall_hours_total" in exported  # seconds here
    # the README's captions drawn by a saved G: one row per caption, the seeds shared by models
    from PIL import Image

    from benchmarks.arms_drawing import PICTURE_CAPTIONS

    drawn = tmp_path / "pictures.png"
    model = f"s={tmp_path / 'state' / 'generator'}"
    assert main(["pictures", str(drawn), model, model, "--per-caption", "2"]) == 0
    grid = Image.open(drawn).convert("RGB")
    side = 4 * 32 + 4
    assert grid.size == (380 + 2 * side, 2 * len(PICTURE_CAPTIONS) * side)
    first, second = (grid.crop((380, y, 380 + side, y + side)) for y in (0, 4 * side))
    assert first.tobytes() == second.tobytes()  # same model, same seeds: same picture
    assert first.tobytes() != grid.crop((380, side, 380 + side, 2 * side)).tobytes()


def test_a_fork_of_a_fork_starts_its_curve_at_the_arm_it_names() -> None:
    from benchmarks.arms_drawing import _parent

    paths = ["token-layer"]
    words = {"arm": "words", "images": 500, "caption_paths": paths}
    shapes = {"arm": "shapes", "images": 500, "forked_at": 400, "caption_paths": paths}
    polish = {"arm": "polish", "images": 600, "forked_at": 500, "forked_from": "shapes"}
    again = {"arm": "again", "images": 700, "forked_at": 600, "forked_from": "polish"}
    rows = [words, shapes, polish | {"caption_paths": paths}, again | {"caption_paths": paths}]
    assert _parent(rows, rows[2]) is shapes  # not words, the other arm at 500
    assert _parent(rows, rows[3]) is rows[2]
    old = {"arm": "old", "images": 600, "forked_at": 500, "caption_paths": paths}
    assert _parent(rows, old) is words  # no forked_from: the arm that is not a fork
