"""The sample grids of a run: the EMA generator on fixed captions and fixed noise, so that the
grids of successive steps are comparable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from models.images import image_grid
from models.runtime import sample_z
from training.config import TrainConfig

if TYPE_CHECKING:
    from training.run_dir import RunDir
    from training.state import TrainerState


def sample_captions(c: TrainConfig, dataset: Any, count: int = 16) -> list[str]:
    """The fixed captions of the sample grids: the sample split's first, else the dataset's."""
    from pathlib import Path

    from training.data.base import DatasetError
    from training.data.coco import load_captions_file

    split = c.data.sample_split or c.data.train_split
    root = Path(c.data.source)
    try:
        records = load_captions_file(root / "annotations" / f"captions_{split}.json", root / split)
    except (DatasetError, OSError):
        records = getattr(dataset, "records", [])
    captions = [r.captions[0] for r in records[: count * 2] if r.captions and r.captions[0]]
    return captions[:count] or ["a red circle"]


@torch.no_grad()
def write_samples(state: TrainerState, run_dir: RunDir, captions: list[str]) -> Path:
    """samples/step_NNNNNNN.png: one image per caption (z seeded by its position), 8 a row."""
    ema = state.networks.ema
    text = state.text_encoder.encode(captions, state.device)
    z = sample_z(list(range(len(captions))), ema.config.z_dim).to(state.device)  # (N, Z)
    with state.autocast():
        images = ema(z, text.sentence, text.words, text.mask).float().cpu()  # (N, 3, R, R)
    path = run_dir.sample_path(state.progress.step)
    image_grid(images, columns=min(8, len(captions))).save(path)
    (run_dir.samples / "captions.txt").write_text("\n".join(captions) + "\n")
    return path
