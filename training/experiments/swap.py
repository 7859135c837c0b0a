"""The swap-negative objective (experiments.swap_negatives, w_swap; not in the paper).

The paper's objective, with each image's caption also ranked above one edited copy of it (its
relation reversed, two colours or, with `swap_edits`, two shapes exchanged: `negatives.py`)
inside L_sent and L_word of both phases, and with w_swap > 0 that ranking once more on its
own: + w_swap L_swap in L_D and L_G. With w_mismatch > 0, D's hinge also scores each real image
with its edited caption as fake (+ w_mismatch L_mismatch in L_D alone, the matching-aware
discriminator of GAN-INT-CLS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from models.discriminator import Discriminator, DiscriminatorOutput
from training.data.stream import derived_seed
from training.experiments.losses import (
    mismatch_hinge_loss,
    sentence_contrastive_loss_with_negatives,
    swap_ranking_loss,
    word_region_contrastive_loss_with_negatives,
)
from training.experiments.negatives import DEFAULT_EDITS, NEGATIVES_STREAM, encode_negatives
from training.objectives import Captions, LossWeights, Objective, gather, split_real_fake


@dataclass
class SwapNegatives:
    """One sub-batch's edited captions (`SubBatch.extra`); `projected` is D's V e_s of them,
    made once per phase (`SwapNegativesObjective.projected`)."""

    text: Any  # TextFeatures (n, ...) of the edited captions
    valid: torch.Tensor  # (n,) bool: False where the caption had nothing to edit
    projected: torch.Tensor | None = None  # (n, F)


class SwapNegativesObjective(Objective):
    """`Objective` with swap negatives in L_sent and L_word, and L_swap weighted by w_swap."""

    def __init__(
        self,
        weights: LossWeights,
        gather_negatives: bool,
        w_swap: float,
        *,
        w_mismatch: float = 0.0,
        edits: Sequence[str] = DEFAULT_EDITS,
        seed: int,
        rank: int,
        text_encoder: Any,
        discriminator: Discriminator,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        super().__init__(weights, gather_negatives)
        self.w_swap, self.w_mismatch, self.edits = w_swap, w_mismatch, tuple(edits)
        if w_swap:
            self.text_weights["swap"] = w_swap
        self.seed, self.rank = seed, rank
        self.text_encoder, self.discriminator = text_encoder, discriminator
        self.device, self.autocast = device, autocast

    def prepare(
        self, captions: Sequence[str], step: int, parts: Sequence[slice]
    ) -> list[SwapNegatives]:
        """Each caption's edited copy, encoded, cut into the step's sub-batches."""
        seed = derived_seed(self.seed, step, self.rank, NEGATIVES_STREAM)
        split = encode_negatives(self.text_encoder, captions, seed, self.device, parts, self.edits)
        return [SwapNegatives(text, valid) for text, valid in split]

    def projected(self, negatives: SwapNegatives) -> torch.Tensor:
        """D's V e_s of the edited captions, in the graph, made on the phase's first loss (right
        after D's forward, as the sentence projection of the real captions) and kept for its
        second, so D's spectral-norm power iteration runs once per phase for them."""
        if negatives.projected is None:
            with self.autocast():
                sentence = negatives.text.sentence  # (n, D_s)
                negatives.projected = self.discriminator.sentence_projection(sentence)
        return negatives.projected

    def text_image_terms(self, half: DiscriminatorOutput, sub: Captions) -> dict[str, torch.Tensor]:
        w, g = self.weights, self.gather
        negatives: SwapNegatives = sub.extra
        projected = self.projected(negatives)
        valid = gather(negatives.valid, g)
        terms = {}
        if w.sent:
            terms["sent"] = sentence_contrastive_loss_with_negatives(
                gather(half.features, g),
                gather(half.sentence, g),
                gather(projected, g),
                valid,
                w.temperature,
            )
        if w.word:
            terms["word"] = word_region_contrastive_loss_with_negatives(
                gather(half.regions, g),
                gather(sub.words, g),
                gather(sub.mask, g),
                gather(negatives.text.words, g),
                gather(negatives.text.mask, g),
                valid,
                w.rho1,
                w.rho2,
                w.rho3,
            )
        if self.w_swap:
            terms["swap"] = swap_ranking_loss(
                half.features, half.sentence, projected, negatives.valid, w.temperature
            )
        return terms

    def discriminator_loss(
        self, out: DiscriminatorOutput, sub: Captions
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The paper's L_D (with the negatives in its text terms), + w_mismatch L_mismatch."""
        total, terms = super().discriminator_loss(out, sub)
        if self.w_mismatch:
            real, _ = split_real_fake(out)
            negatives: SwapNegatives = sub.extra
            terms["mismatch"] = mismatch_hinge_loss(
                real.logits,
                real.features,
                real.sentence,
                self.projected(negatives),
                negatives.valid,
            )
            total = total + self.w_mismatch * terms["mismatch"]
        return total, terms
