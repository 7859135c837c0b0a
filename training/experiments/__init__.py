"""The project's own experiments: what this repository tries beyond the XMC-GAN paper.

Everything a run's experiment switches change is reached from here, so the paper's path
(`models/losses.py`, `training/objectives.py`, the trainer's phases) never reads them; with
every switch off a run is the paper's. Their code is this package and, for D's variants,
`models/discriminator_variants.py` (G's own, `GeneratorConfig.caption_paths`, live in
`models/caption_paths.py`).

- swap_negatives: one edited caption per image (its relation reversed or two colours
  exchanged) as one more candidate in L_sent and L_word (negatives.py, swap.py, losses.py);
- w_swap: + w_swap L_swap, the caption ranked against its edited copy alone (swap.py);
- w_mismatch: + w_mismatch L_mismatch in L_D, D's hinge scoring a real image with its edited
  caption as fake (the matching-aware D of GAN-INT-CLS; swap.py, losses.py);
- d_coords, d_sentence_head: coordinate channels in D, and D's V e_s as an MLP of e_s
  (DiscriminatorConfig.coords / sentence_head, built by models/discriminator_variants.py).

The trainer meets them through `objective` (which objective its phases call) and the training
configuration through `check` and `discriminator_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from models.config import DiscriminatorConfig
    from models.discriminator import Discriminator
    from training.objectives import LossWeights, Objective

__all__ = ["check", "discriminator_config", "objective"]


def check(config: Any) -> None:
    """Refuse experiment switches that cannot work together (a TrainConfig's validation)."""
    if config.w_swap < 0 or (config.w_swap and not config.swap_negatives):
        raise ValueError(f"w_swap ({config.w_swap}) must be >= 0 and needs swap_negatives=true")
    if config.w_mismatch < 0 or (config.w_mismatch and not config.swap_negatives):
        raise ValueError(
            f"w_mismatch ({config.w_mismatch}) must be >= 0 and needs swap_negatives=true"
        )


def discriminator_config(config: Any, discriminator: DiscriminatorConfig) -> DiscriminatorConfig:
    """The run's DiscriminatorConfig with the variants its TrainConfig asks for."""
    return dataclasses.replace(
        discriminator, coords=config.d_coords, sentence_head=config.d_sentence_head
    )


def objective(
    config: Any,
    weights: LossWeights,
    *,
    rank: int,
    text_encoder: Any,
    discriminator: Discriminator,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> Objective:
    """The objective the trainer's phases call: the paper's, or the swap-negative one."""
    from training.objectives import Objective

    if not config.swap_negatives:
        return Objective(weights, config.gather_negatives)
    from training.experiments.swap import SwapNegativesObjective

    return SwapNegativesObjective(
        weights,
        config.gather_negatives,
        config.w_swap,
        w_mismatch=config.w_mismatch,
        seed=config.seed,
        rank=rank,
        text_encoder=text_encoder,
        discriminator=discriminator,
        device=device,
        autocast=autocast,
    )
