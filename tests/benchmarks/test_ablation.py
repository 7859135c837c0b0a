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
    common += ["--batch-size", "4", "--num", "8", "--quiet", "--set", "optim.lr_g=0.0002"]
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
        main([*common[:-2], "--set", "optim.lr_g=0.0003", "--rows", "1"])


def _summary(seed: int, rows: dict[str, float], steps: int = 12000) -> dict:
    def scores(mean: float) -> dict:
        split = {"mean": mean, "background": mean, "color": 1.0, "shape": mean, "relation": 0.5}
        return {"val": split, "test_heldout": {**split, "mean": mean / 2}}

    budget = f"preset `tiny`, {steps} steps of batch 16 (...), seed {seed}, 100 scored images"
    real = {"mean": 0.8}
    return {
        "budget": budget,
        "results": [{"row": row, "scores": scores(mean)} for row, mean in rows.items()],
        "reference": {
            split: {"real": real, "untrained": {"mean": 0.2}} for split in ("val", "test_heldout")
        },
    }


def test_merge_tables_seeds_as_mean_and_spread(tmp_path: Path, capsys) -> None:
    from benchmarks.ablation import main, seeds_table

    seed0 = _summary(0, {"no contrastive loss": 0.4, "all three (XMC-GAN)": 0.6})
    seed1_rows = {"no contrastive loss": 0.48, "all three (XMC-GAN)": 0.72}
    seed1 = _summary(1, seed1_rows)
    lines = seeds_table([seed0, seed1]).splitlines()
    assert ", seed" not in lines[0]
    hinge = next(line for line in lines if line.startswith("| no contrastive loss |"))
    full = next(line for line in lines if line.startswith("| all three (XMC-GAN) |"))
    # val / ceiling 0.8: (0.5 + 0.6) / 2 = 0.55 +/- 0.05; held-out halves: 0.275 +/- 0.025
    assert hinge.split(" | ")[1:5] == ["2", "0.550 ± 0.050", "0.275 ± 0.025", "+0.000 ± 0.000"]
    # (0.75 + 0.9) / 2 = 0.825 +/- 0.075; paired by seed 0.25 and 0.3 above hinge only, so
    # +0.275 +/- 0.025 (unpaired means would give the same +0.275, with a spread of 0.075)
    assert full.split(" | ")[1:5] == ["2", "0.825 ± 0.075", "0.412 ± 0.038", "+0.275 ± 0.025"]
    assert full.endswith("| 0.500 ± 0.000 |")
    assert "| untrained G (floor) | | 0.250 | 0.250 |" in lines[-1]
    # a row only one seed has scored says so, and is paired with that seed's hinge only
    one = seeds_table([_summary(0, {"no contrastive loss": 0.4}), _summary(1, seed1_rows)])
    assert "| all three (XMC-GAN) | 1 | 0.900 ± 0.000 | 0.450 ± 0.000 | +0.300 ± 0.000 |" in one
    with pytest.raises(ValueError, match="different budgets"):
        seeds_table([seed0, _summary(1, {}, steps=300)])
    for i, summary in enumerate((seed0, seed1)):
        (tmp_path / f"{i}.json").write_text(json.dumps(summary))
    assert main(["--merge", str(tmp_path / "0.json"), str(tmp_path / "1.json")]) == 0
    assert full in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--merge", str(tmp_path / "missing.json")])
