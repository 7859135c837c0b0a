"""The sample grids of a run: the EMA generator on fixed captions and fixed noise, so that the
grids of successive steps are comparable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.images import image_grid
from models.runtime import sample_z
from training.config import TrainConfig


def sample_captions(c: TrainConfig, dataset: Any, count: int = 16) -> list[str]:
    """The fixed captions of the sample grids: the sample split's first, else the dataset's."""
    from pathlib import Path

    from training.data.coco import DatasetError, load_captions_file

    split = c.data.sample_split or c.data.train_split
    root = Path(c.data.source)
    try:
        records = load_captions_file(root / "annotations" / f"captions_{split}.json", root / split)
    except (DatasetError, OSError):
        records = getattr(dataset, "records", [])
    captions = [r.captions[0] for r in records[: count * 2] if r.captions and r.captions[0]]
    return captions[:count] or ["a red circle"]


@torch.no_grad()
def write_samples(trainer: Any, captions: list[str]) -> Path:
    """samples/step_NNNNNNN.png: one image per caption (z seeded by its position), 8 a row."""
    text = trainer.text_encoder.encode(captions, trainer.device)
    z_dim = trainer.model_configs.generator.z_dim
    z = sample_z(list(range(len(captions))), z_dim).to(trainer.device)  # (N, Z)
    with trainer._autocast():
        images = trainer.ema(z, text.sentence, text.words, text.mask).float().cpu()
    path = trainer.run.sample_path(trainer.step)
    image_grid(images, columns=min(8, len(captions))).save(path)
    (trainer.run.samples / "captions.txt").write_text("\n".join(captions) + "\n")
    return path
