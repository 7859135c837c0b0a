"""benchmarks.relation_text_probe: the labels say which way round a scene is, the linear probe
cannot learn an XOR that the MLP learns, and a benchmark is probed end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RED_CIRCLE = {"shape": "circle", "color": "red", "size": "small", "bbox": [1, 10, 8, 8]}
YELLOW_SQUARE = {"shape": "square", "color": "yellow", "size": "large", "bbox": [18, 8, 14, 14]}
SCENE = {"background": "gray", "relation": "left of", "objects": [RED_CIRCLE, YELLOW_SQUARE]}


def test_same_words_opposite_labels() -> None:
    from benchmarks.relation_text_probe import labelled_captions

    captions, label = labelled_captions(SCENE)
    assert len(captions) == 7 and label == 1  # red circle (first in order) left of the square
    assert captions[0] == "a red circle left of a yellow square"
    assert "a yellow square right of a red circle" in captions  # a paraphrase: the same label
    mirrored = {**SCENE, "objects": [YELLOW_SQUARE, RED_CIRCLE]}  # the square left of the circle
    other, other_label = labelled_captions(mirrored)
    assert other_label == 0 and sorted(other[0].split()) == sorted(captions[0].split())
    assert labelled_captions({**SCENE, "relation": "below"})[1] == 0
    assert labelled_captions({**SCENE, "objects": [RED_CIRCLE, RED_CIRCLE]}) is None
    assert labelled_captions({**SCENE, "relation": None, "objects": [RED_CIRCLE]}) is None


def test_the_linear_probe_misses_an_xor_the_mlp_learns() -> None:
    import torch

    from benchmarks.relation_text_probe import fit_probe

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 2, generator=g)
    xor = ((x[:, 0] > 0) != (x[:, 1] > 0)).float()
    half = (x[:, 0] > 0).float()

    def accuracy(hidden: int, labels: torch.Tensor) -> float:
        probe = fit_probe(x[:1500], labels[:1500], hidden, epochs=150, seed=0)
        with torch.no_grad():
            return float(((probe(x[1500:]) > 0) == (labels[1500:] > 0.5)).float().mean())

    assert accuracy(0, half) > 0.95  # linearly separable: the linear probe is not broken
    assert accuracy(0, xor) < 0.65
    assert accuracy(32, xor) > 0.9


def test_a_benchmark_is_probed_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from benchmarks.relation_text_probe import main
    from training.shapes.scenes import make_benchmark

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=24, n_val=12, n_test_heldout=4, progress=False)
    out = tmp_path / "probe.json"
    argv = ["--data", str(data), "--num", "24", "--epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["train_captions"] % 7 == 0 and result["train_captions"] > 0
    assert set(result["accuracy"]) == {"sentence, linear", "sentence, MLP", "words, MLP"}
    printed = capsys.readouterr().out
    for name, row in result["accuracy"].items():
        assert 0.0 <= row["val"] <= 1.0
        assert f"| {name} | {row['train']:.3f} | {row['val']:.3f} |" in printed
    with pytest.raises(SystemExit) as stopped:  # one line on stderr, not a traceback
        main(["--data", str(tmp_path / "missing")])
    assert stopped.value.code == 2
    assert "annotations file not found" in capsys.readouterr().err
