"""Which scenes a faithfulness run scores: a split's own images, or fresh scenes of its kind.

A score on one fixed split can come from fitting that split. Fresh scenes are those that
`make_benchmark` would write for the split with another seed, drawn and rendered in memory:
new scenes of the same distribution (val and train: no held-out colour-shape pair;
test_heldout: at least one), with the same templates and the same caption draw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.data.base import CaptionedImage
from training.metrics.sampling import EvaluationError, load_split
from training.shapes.scenes import (
    _MAX_PER_SPLIT,
    SPLITS,
    BenchmarkError,
    check_canvas_size,
    render_scene,
    split_scene,
)

FRESH_DEFAULT_NUM = 1000


@dataclass(frozen=True)
class SceneSource:
    """Which scenes a faithfulness run scores: the split's own files, or fresh ones."""

    # None: the split's images on disk; N: the split's scenes of the benchmark of seed N,
    # drawn and rendered in memory (must differ from the benchmark's own seed).
    fresh_seed: int | None = None
    # None: every scene; 1 or 2: only the scenes with that many objects.
    objects: int | None = None


def fresh_scenes(
    split: str, count: int, size: int, seed: int, objects: int | None = None
) -> list[tuple[int, dict[str, Any], list[str]]]:
    """(image id, attributes, five captions) of the first `count` scenes of `split` (those
    with `objects` objects only, if given) that the benchmark of `seed` holds."""
    if split not in SPLITS:
        raise BenchmarkError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if count < 1:
        raise BenchmarkError(f"the number of fresh scenes must be >= 1, got {count}")
    if objects not in (None, 1, 2):
        raise BenchmarkError(f"objects must be 1 or 2, got {objects}")
    check_canvas_size(size)
    chosen: list[tuple[int, dict[str, Any], list[str]]] = []
    index = 0
    while len(chosen) < count and index <= _MAX_PER_SPLIT:
        image_id, attributes, captions = split_scene(seed, split, index, size)
        if objects is None or len(attributes["objects"]) == objects:
            chosen.append((image_id, attributes, captions))
        index += 1
    return chosen


def benchmark_info(data_root: str | Path) -> dict[str, Any]:
    """ROOT/shapes_benchmark.json ({"spec", "size", "seed", "counts"}), or {} without it."""
    path = Path(data_root) / "shapes_benchmark.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def scene_records(
    data_root: str | Path, split: str, num: int | None, source: SceneSource, resolution: int
) -> tuple[list[CaptionedImage], torch.Tensor | None]:
    """The records to score (the first `num`, default all or FRESH_DEFAULT_NUM fresh) and,
    for fresh scenes, their real renders ((N, 3, R, R) uint8; None for the split's own
    images, which `real_images` reads from disk)."""
    if source.objects not in (None, 1, 2):
        raise EvaluationError(f"--objects must be 1 or 2, got {source.objects}")
    if source.fresh_seed is None:
        records = load_split(data_root, split, None if source.objects else num, True)
        if source.objects:
            records = [r for r in records if len(r.scene()["objects"]) == source.objects]
            records = records[:num] if num is not None else records
            if not records:
                raise EvaluationError(f"split {split!r} holds no {source.objects}-object scene")
        return records, None
    if num is not None and num < 1:
        raise EvaluationError(f"--num must be >= 1, got {num}")
    info = benchmark_info(data_root)
    if info.get("seed") == source.fresh_seed:
        raise EvaluationError(
            f"--fresh-seed {source.fresh_seed} is the seed of the benchmark in {data_root} "
            "(its own split); choose another seed"
        )
    size = info.get("size", resolution)  # drawn at the benchmark's side, as the split is
    scenes = fresh_scenes(split, num or FRESH_DEFAULT_NUM, size, source.fresh_seed, source.objects)
    records = [
        CaptionedImage(image_id, Path(split) / f"{image_id:012d}.png", tuple(captions), scene)
        for image_id, scene, captions in scenes
    ]
    real = torch.stack(
        [_as_tensor(render_scene(scene, size), resolution) for _, scene, _ in scenes]
    )
    return records, real


def _as_tensor(image: Any, resolution: int) -> torch.Tensor:
    """A PIL render -> (3, R, R) uint8, box-resized to R as `real_images` does."""
    import numpy as np
    from PIL import Image

    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
