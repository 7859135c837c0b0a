"""The project's own experiments: what this repository tries beyond the XMC-GAN paper.

Everything a run's experiment switches change is reached from here, so the paper's path
(`models/losses.py`, `training/objectives.py`, the trainer's phases) never reads them; with
every switch off a run is the paper's. Their code is this package and, for D's variants,
`models/discriminator_variants.py` (G's own, `GeneratorConfig.caption_paths`, live in
`models/caption_paths.py`).

- swap_negatives: one edited caption per image (its relation reversed or two colours
  exchanged) as one more candidate in L_sent and L_word (negatives.py, swap.py, losses.py);
- swap_edits: which edits those are (+ "shapes": two shape words exchanged; "replace-shape":
  the first shape word replaced);
- w_swap: + w_swap L_swap, the caption ranked against its edited copy alone (swap.py);
- w_mismatch: + w_mismatch L_mismatch in L_D, D's hinge scoring a real image with its edited
  caption as fake (the matching-aware D of GAN-INT-CLS; swap.py, losses.py);
- d_coords, d_sentence_head: coordinate channels in D, and D's V e_s as an MLP of e_s
  (DiscriminatorConfig.coords / sentence_head, built by models/discriminator_variants.py).

Their switches are `ExperimentsConfig`, the `experiments` section of a TrainConfig
(`--set experiments.swap_negatives=true`); nothing outside this package reads it but
`TrainConfig.model_configs` (through `network_configs`). The trainer meets them through
`objective` (which objective its phases call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.config import CAPTION_PATHS, DiscriminatorConfig, GeneratorConfig

if TYPE_CHECKING:
    import torch

    from models.discriminator import Discriminator
    from training.config import TrainConfig
    from training.objectives import LossWeights, Objective

__all__ = ["ExperimentsConfig", "network_configs", "objective"]


@dataclass(frozen=True)
class ExperimentsConfig:
    """The project's own switches (none is in the paper); all off is the paper's run."""

    # one hard negative per caption in L_sent and L_word: its relation reversed or two colours
    # exchanged (negatives.py)
    swap_negatives: bool = False
    # weight of L_swap, the ranking once more with the edited caption as the only candidate
    # (0 = off; needs swap_negatives)
    w_swap: float = 0.0
    # weight of L_mismatch in L_D: each real image with its edited caption scored as fake by
    # D's hinge (the matching-aware D of GAN-INT-CLS; 0 = off; needs swap_negatives)
    w_mismatch: float = 0.0
    # the edits a swap negative is drawn from (negatives.EDITS): relation, colours, shapes (two
    # shape words exchanged: each colour on the other's shape), replace-shape (one shape wrong)
    swap_edits: tuple[str, ...] = ("relation", "colours")
    d_coords: bool = False  # coordinate channels in D (DiscriminatorConfig.coords, CoordConv)
    d_sentence_head: bool = False  # D's V e_s as an MLP of e_s (DiscriminatorConfig.sentence_head)
    # G's readings of the caption not in the paper (GeneratorConfig.caption_paths): any of
    # sentence-head, token-layer, word-coords, coarse-attention; each starts as the identity,
    # so run.init_generator can be a model trained without them
    caption_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.w_swap < 0 or (self.w_swap and not self.swap_negatives):
            raise ValueError(
                f"experiments.w_swap ({self.w_swap}) must be >= 0 and needs "
                "experiments.swap_negatives=true"
            )
        if self.w_mismatch < 0 or (self.w_mismatch and not self.swap_negatives):
            raise ValueError(
                f"experiments.w_mismatch ({self.w_mismatch}) must be >= 0 and needs "
                "experiments.swap_negatives=true"
            )
        from training.experiments.negatives import EDITS

        if not self.swap_edits or any(e not in EDITS for e in self.swap_edits):
            raise ValueError(
                f"experiments.swap_edits: {list(self.swap_edits)}; name one or more of "
                f"{', '.join(EDITS)}"
            )
        bad = [p for p in self.caption_paths if p not in CAPTION_PATHS]
        if bad:
            raise ValueError(
                f"experiments.caption_paths: unknown {bad}; choose from {', '.join(CAPTION_PATHS)}"
            )


# the network fields these switches set: a run sets them here, never on the network configs
SETS = {
    "generator.caption_paths": "experiments.caption_paths",
    "discriminator.coords": "experiments.d_coords",
    "discriminator.sentence_head": "experiments.d_sentence_head",
}


def network_configs(
    config: ExperimentsConfig, generator: GeneratorConfig, discriminator: DiscriminatorConfig
) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    """The run's network configs with the variants the experiments ask for."""
    generator = dataclasses.replace(generator, caption_paths=config.caption_paths)
    discriminator = dataclasses.replace(
        discriminator, coords=config.d_coords, sentence_head=config.d_sentence_head
    )
    return generator, discriminator


def objective(
    config: TrainConfig,
    weights: LossWeights,
    *,
    rank: int,
    text_encoder: Any,
    discriminator: Discriminator,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> Objective:
    """The objective the trainer's phases call: the paper's, or the swap-negative one (as
    `config.experiments` asks)."""
    from training.objectives import Objective

    switches, gather_negatives = config.experiments, config.objective.gather_negatives
    if not switches.swap_negatives:
        return Objective(weights, gather_negatives)
    from training.experiments.swap import SwapNegativesObjective

    return SwapNegativesObjective(
        weights,
        gather_negatives,
        switches.w_swap,
        w_mismatch=switches.w_mismatch,
        edits=switches.swap_edits,
        seed=config.run.seed,
        rank=rank,
        text_encoder=text_encoder,
        discriminator=discriminator,
        device=device,
        autocast=autocast,
    )
