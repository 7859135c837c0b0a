"""The faithfulness scorer's shape classifier: a small CNN trained on real renders.

Spec ("Scoring faithfulness"): shape verdicts come from a classifier trained on real
renders, which must score >= 98% on real `val` objects before its verdicts count. It
is trained deterministically (fixed scenes, fixed seed), on the very silhouette crops the
scorer extracts (`training.shapes.pixels.object_crop`), and cached as safetensors keyed by
canvas size and recipe version, e.g. `ROOT/.xmc_eval/shape_cnn_64.safetensors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.shapes import pixels as seg
from training.shapes.scenes import SHAPES, check_canvas_size, render_scene, sample_scene

# Bump whenever the crops, the network or the training recipe change: caches then retrain.
RECIPE_VERSION = "1"
GATE_ACCURACY = 0.98


class ShapeClassifierError(RuntimeError):
    """The shape classifier cannot be trusted (missed the gate) or cannot be loaded."""


@dataclass(frozen=True)
class ShapeClassifierConfig:
    size: int = 64
    """Canvas side S the classifier serves (crops are resampled, but rims depend on S)."""
    train_scenes: int = 1200
    """Real training scenes (1 or 2 objects each, about 1.5 objects per scene)."""
    gate_scenes: int = 300
    """Real val scenes whose objects the classifier must get >= 98% right."""
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    """Seeds the network's initialisation, the batch order and the training scenes."""


class ShapeCNN(nn.Module):
    """(N, 1, 28, 28) silhouettes -> (N, 3) logits over SHAPES."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 7, 7)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, len(SHAPES))
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(crops))


@dataclass
class ShapeClassifier:
    network: ShapeCNN
    size: int
    val_accuracy: float
    """Accuracy on real val objects, measured when it was trained."""

    def check_gate(self) -> None:
        if self.val_accuracy < GATE_ACCURACY:
            raise ShapeClassifierError(
                f"the {self.size}px shape classifier scores {self.val_accuracy:.1%} on real val "
                f"objects, below the {GATE_ACCURACY:.0%} the spec requires before its verdicts "
                "count; shape faithfulness cannot be scored (delete its cache to retrain)"
            )

    @torch.no_grad()
    def predict(self, crops: torch.Tensor) -> list[str]:
        """(N, 1, 28, 28) silhouettes -> shape names."""
        if crops.shape[0] == 0:
            return []
        self.network.eval()
        return [SHAPES[i] for i in self.network(crops).argmax(dim=1).tolist()]


def scaled_scene(attributes: dict[str, Any], scale: float) -> dict[str, Any]:
    """The same scene with its boxes scaled to another canvas side."""
    objects = [
        {**obj, "bbox": [value * scale for value in obj["bbox"]]} for obj in attributes["objects"]
    ]
    return {**attributes, "objects": objects}


def scene_crops(scenes: list[dict[str, Any]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Render scenes at S and cut each object's silhouette, as the scorer would.

    Returns crops (N, 1, 28, 28) and labels (N,) indexing SHAPES.
    """
    crops, labels = [], []
    for attributes in scenes:
        pixels = seg.as_float_images([render_scene(attributes, size)], size)  # (1, 3, S, S)
        distance = seg.distance_from_background(pixels, seg.background_colors(pixels))[0]
        foreground = seg.foreground_masks(distance[None])[0]
        for obj, own in zip(
            attributes["objects"], seg.scene_object_masks(foreground, attributes), strict=True
        ):
            crops.append(seg.object_crop(distance, own, foreground & ~own))
            labels.append(SHAPES.index(obj["shape"]))
    return torch.stack(crops), torch.tensor(labels)


def training_scenes(size: int, count: int, seed: int) -> list[dict[str, Any]]:
    """Random real scenes, a quarter of them with held-out colour-shape pairs."""
    return [
        sample_scene(
            random.Random(f"xmc-eval shape classifier/{seed}/{index}"), size, heldout=index % 4 == 3
        )
        for index in range(count)
    ]


def val_scenes(size: int, count: int, data_root: str | Path | None) -> list[dict[str, Any]]:
    """The first `count` scenes of ROOT's val split (scaled to S), topped up with fresh
    val-like scenes (no held-out pair) when it has fewer or there is no ROOT."""
    path = Path(data_root) / "annotations" / "captions_val.json" if data_root else None
    scenes = []
    if path is not None and path.is_file():
        records = json.loads(path.read_text(encoding="utf-8"))["images"][:count]
        scenes = [scaled_scene(record["attributes"], size / record["width"]) for record in records]
    return scenes + [
        sample_scene(random.Random(f"xmc-eval shape gate/{index}"), size, heldout=False)
        for index in range(count - len(scenes))
    ]


@torch.no_grad()
def accuracy(network: ShapeCNN, crops: torch.Tensor, labels: torch.Tensor) -> float:
    network.eval()
    return (network(crops).argmax(dim=1) == labels).float().mean().item()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run on one thread: faster for ops this small on a shared CPU, and bit-reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_shape_classifier(
    config: ShapeClassifierConfig, data_root: str | Path | None = None
) -> ShapeClassifier:
    """Train on real renders, deterministically; measure on real val objects."""
    check_canvas_size(config.size)
    with torch.random.fork_rng(devices=[]), one_thread():
        crops, labels = scene_crops(
            training_scenes(config.size, config.train_scenes, config.seed), config.size
        )
        torch.manual_seed(config.seed)
        network = ShapeCNN()
        optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
        order = torch.Generator().manual_seed(config.seed)
        for _ in range(config.epochs):
            network.train()
            for batch in torch.randperm(len(labels), generator=order).split(config.batch_size):
                loss = nn.functional.cross_entropy(network(crops[batch]), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        val_crops, val_labels = scene_crops(
            val_scenes(config.size, config.gate_scenes, data_root), config.size
        )
        val_accuracy = accuracy(network, val_crops, val_labels)
    return ShapeClassifier(network, config.size, val_accuracy)


def cache_path(cache_dir: str | Path, size: int) -> Path:
    return Path(cache_dir) / f"shape_cnn_{size}.safetensors"


def save_classifier(classifier: ShapeClassifier, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "recipe": RECIPE_VERSION,
        "size": str(classifier.size),
        "val_accuracy": repr(classifier.val_accuracy),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(classifier.network.state_dict(), str(temporary), metadata=metadata)
    temporary.replace(path)


def load_classifier(path: Path) -> ShapeClassifier | None:
    """The cached classifier, or None when absent or from another recipe."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("recipe") != RECIPE_VERSION:
            return None
        network = ShapeCNN()
        network.load_state_dict(load_file(str(path)))
    except (OSError, RuntimeError, ValueError) as error:
        raise ShapeClassifierError(
            f"cannot load the shape classifier cache {path}: {error} (delete it to retrain)"
        ) from error
    return ShapeClassifier(network, int(metadata["size"]), float(metadata["val_accuracy"]))


def load_or_train(
    size: int,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    config: ShapeClassifierConfig | None = None,
    check: bool = True,
    progress: bool = False,
) -> ShapeClassifier:
    """The cached S-pixel classifier, trained (and cached) first if needed.

    `cache_dir` defaults to `ROOT/.xmc_eval` when a benchmark root is given, else to
    `$XMC_CACHE/eval` (`~/.cache/xmc/eval`); a cache that cannot be written only costs a
    retraining next time. Raises ShapeClassifierError when it misses the 98% gate and
    `check` is set.
    """
    config = config or ShapeClassifierConfig(size=size)
    if config.size != size:
        raise ValueError(f"config is for {config.size}px, asked for {size}px")
    if cache_dir is None:
        cache_dir = (
            Path(data_root) / ".xmc_eval"
            if data_root
            else Path(os.environ.get("XMC_CACHE", Path.home() / ".cache" / "xmc")) / "eval"
        )
    path = cache_path(cache_dir, size)
    classifier = load_classifier(path)
    if classifier is None:
        if progress:
            print(
                f"training the {size}px shape classifier on real renders (once, cached as {path})",
                file=sys.stderr,
            )
        classifier = train_shape_classifier(config, data_root)
        try:
            save_classifier(classifier, path)
        except OSError as error:
            warnings.warn(f"cannot cache the shape classifier at {path}: {error}", stacklevel=2)
    if check:
        classifier.check_gate()
    return classifier
