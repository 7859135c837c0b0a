"""benchmarks.ablation: rows scored in separate calls accumulate in one table, resumed rows are
not trained again, and another budget in the same folder is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.shapes.scenes import make_benchmark

    root = tmp_path_factory.mktemp("shapes") / "data"
    make_benchmark(root, size=32, seed=0, n_train=16, n_val=8, n_test_heldout=8, progress=False)
    return root


def test_rows_of_separate_calls_share_one_table(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from benchmarks.ablation import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    common = ["--data", str(shapes), "--out", str(tmp_path), "--preset", "tiny", "--steps", "2"]
    common += ["--batch-size", "4", "--num", "8", "--quiet", "--set", "lr_g=0.0002"]
    assert main([*common, "--rows", "1"]) == 0
    assert main([*common, "--rows", "5"]) == 0
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["row"] for r in summary["results"]] == ["no contrastive loss", "all three (XMC-GAN)"]
    assert "lr_g=0.0002" in summary["budget"] and "2 steps of batch 4" in summary["budget"]
    table = (tmp_path / "ablation.md").read_text()
    assert "| no contrastive loss |" in table and "| all three (XMC-GAN) |" in table
    assert "| real images (ceiling) |" in table
    # a finished row is scored again, not trained again
    run = tmp_path / "no-contrastive-loss"
    checkpoints = {path: path.stat().st_mtime_ns for path in run.glob("checkpoint-*.pt")}
    assert checkpoints
    assert main([*common, "--rows", "1", "--rescore"]) == 0
    assert {path: path.stat().st_mtime_ns for path in run.glob("checkpoint-*.pt")} == checkpoints
    capsys.readouterr()
    assert main([*common, "--rows", "1,5"]) == 0  # both scored already: nothing to do
    assert capsys.readouterr().out.count("scored already") == 2
    with pytest.raises(SystemExit, match="another budget"):
        main([*common[:-2], "--set", "lr_g=0.0003", "--rows", "1"])
