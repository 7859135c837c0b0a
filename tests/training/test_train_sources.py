"""The trainer reads every source `--data` can name: the shapes benchmark as a COCO root, as a
folder of images with same-name .txt captions, as a JSONL manifest, and as prepared tar shards."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from training.data.coco import load_captions_file
from training.data.prepare import main as prepare_main


@pytest.fixture(scope="module")
def sources(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    records = load_captions_file(
        shapes_root / "annotations" / "captions_train.json", shapes_root / "train"
    )
    out = tmp_path_factory.mktemp("sources")
    folder = out / "folder"
    folder.mkdir()
    lines = []
    for record in records:
        shutil.copy(record.path, folder / record.path.name)
        (folder / record.path.name).with_suffix(".txt").write_text("\n".join(record.captions))
        lines.append(
            json.dumps({"image": f"folder/{record.path.name}", "caption": record.captions})
        )
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert prepare_main([str(folder), str(out / "shards"), "--resolution", "32"]) == 0
    return {
        "coco": shapes_root,
        "folder": folder,
        "jsonl": out / "manifest.jsonl",
        "shards": out / "shards",
    }


@pytest.mark.parametrize("kind", ["coco", "folder", "jsonl", "shards"])
def test_two_steps_from_each_source(
    kind: str,
    sources: dict[str, Path],
    new_trainer: Callable,
    tiny_config: Callable,
    tmp_path: Path,
) -> None:
    trainer = new_trainer(tiny_config(sources[kind], {"optim.steps": 2}), tmp_path / "run")
    summary = trainer.fit()
    assert summary["step"] == 2 and trainer.images_seen == 16
    records = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").open()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(isinstance(r["d_loss"], float) for r in records)


def test_the_text_cache_trains_as_encoding_every_batch(
    shapes_root: Path, new_trainer: Callable, tiny_config: Callable, tmp_path: Path
) -> None:
    import torch

    from training.text_cache import CachedTextEncoder, DiskTextCache

    runs = {}
    for cache in ("off", "memory", str(tmp_path / "features")):
        trainer = new_trainer(
            tiny_config(shapes_root, {"optim.steps": 3, "data.text_cache": cache}),
            tmp_path / cache[-6:],
        )
        trainer.fit()
        runs[cache[-6:]] = trainer
    assert isinstance(runs["memory"].text_encoder, CachedTextEncoder)
    cache = runs["memory"].text_encoder
    assert cache.misses == len(cache) >= 24  # 3 steps x 8 captions, each distinct one encoded once
    seen = list(cache._store)[:4]
    cache.encode(seen)
    assert cache.hits == 4 and cache.misses == len(cache)
    assert isinstance(runs["atures"].text_encoder, DiskTextCache)
    assert (tmp_path / "features" / "meta.json").is_file()
    reference = runs["off"].generator.state_dict()
    for name in ("memory", "atures"):
        state = runs[name].generator.state_dict()
        assert all(torch.allclose(state[k], reference[k], atol=1e-5) for k in reference), name
