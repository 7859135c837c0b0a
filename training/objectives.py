"""The XMC-GAN objectives grouped into the two phases of a step (paper Sec. 4, Alg. 1).

L_D = L_adv(D) + w_sent L_sent(real) + w_word L_word(real)           [+ beta L_infomax(real)]
L_G = L_adv(G) + w_sent L_sent(fake) + w_word L_word(fake)
      + w_img L_img(D features: fake vs real) [+ w_img L_img(pretrained CNN)]
      [+ alpha L_infomax(fake)]

Both phases read one forward of D over [real; fake] (the official code concatenates them), so a
step can update D and G from the same forward, as the official `train_g_d` does. The trainer
calls them through an `Objective`, the paper's unless `training.experiments` (the project's own
experiments, not in the paper) hands it one of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from models.config import DiscriminatorConfig
from models.discriminator import DiscriminatorOutput
from models.losses import (
    RHO1,
    RHO2,
    RHO3,
    TAU,
    dual_contrastive_d_loss,
    dual_contrastive_g_loss,
    hinge_d_loss,
    hinge_g_loss,
    image_contrastive_loss,
    infomax_loss,
    sentence_contrastive_loss,
    word_region_contrastive_loss,
)


@dataclass(frozen=True)
class LossWeights:
    sent: float = 1.0  # L_sent: sentence <-> image (D features vs V e_s); 0 disables
    word: float = 1.0  # L_word: words <-> 16x16 regions
    img: float = 1.0  # L_img: fake <-> real image on D's features
    img_cnn: float = 0.0  # L_img on a pretrained CNN's features (official pretrained_image_...)
    adversarial: str = "hinge"  # "hinge" or "dual-contrastive" (Yu et al. 2021)
    infomax_d: float = 0.0  # InfoMax-GAN beta on real images in D (mimicry: 0.2)
    infomax_g: float = 0.0  # InfoMax-GAN alpha on fake images in G (mimicry: 0.2)
    temperature: float = TAU  # tau of L_sent and L_img
    rho1: float = RHO1
    rho2: float = RHO2
    rho3: float = RHO3

    @classmethod
    def from_config(cls, c: Any, discriminator: DiscriminatorConfig) -> LossWeights:
        """The weights an ObjectiveConfig asks for: a loss left out of `losses` has weight 0,
        InfoMax's are 0 unless the run's D has its heads."""
        infomax = discriminator.infomax
        return cls(
            sent=c.w_sent if "sent" in c.losses else 0.0,
            word=c.w_word if "word" in c.losses else 0.0,
            img=c.w_img if "img" in c.losses else 0.0,
            img_cnn=c.w_img if c.pretrained_image_contrastive and c.image_encoder else 0.0,
            adversarial=c.adversarial,
            infomax_d=c.infomax_beta if infomax else 0.0,
            infomax_g=c.infomax_alpha if infomax else 0.0,
            temperature=c.tau,
            rho1=c.rho1,
            rho2=c.rho2,
            rho3=c.rho3,
        )


class Captions(Protocol):
    """What the losses read of a sub-batch (the trainer's SubBatch)."""

    words: torch.Tensor  # (n, T, D_w)
    mask: torch.Tensor  # (n, T) bool
    extra: Any  # what `Objective.prepare` made for it (None for the paper's)


def gather(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """All-gather along the batch with gradients, for negatives from every device (a single
    process, with no process group, has only its own)."""
    import torch.distributed as dist

    if not enabled or not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    import warnings

    import torch.distributed.nn.functional as dist_fn

    with warnings.catch_warnings():  # its deprecation notice would print at every step
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(dist_fn.all_gather(x.contiguous()))


def split_real_fake(out: DiscriminatorOutput) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
    """The [real; fake] D output -> (real, fake)."""

    def half(t: torch.Tensor, first: bool) -> torch.Tensor:
        n = t.shape[0] // 2
        return t[:n] if first else t[n:]

    def maybe_half(t: torch.Tensor | None, first: bool) -> torch.Tensor | None:
        return None if t is None else half(t, first)

    parts = []
    for first in (True, False):
        parts.append(
            DiscriminatorOutput(
                logits=half(out.logits, first),
                features=half(out.features, first),
                sentence=out.sentence,
                regions=half(out.regions, first),
                infomax_local=maybe_half(out.infomax_local, first),
                infomax_global=maybe_half(out.infomax_global, first),
            )
        )
    return parts[0], parts[1]


def _infomax(out: DiscriminatorOutput) -> torch.Tensor:
    """InfoMax's term of one half of D's output (its heads exist when D's `infomax` is on)."""
    if out.infomax_local is None or out.infomax_global is None:
        raise ValueError("an InfoMax weight is on but the discriminator has no InfoMax heads")
    return infomax_loss(out.infomax_local, out.infomax_global)


class Objective:
    """L_D and L_G of one sub-batch, as the trainer's two phases call them (the paper's).

    `training.experiments` may hand the trainer a subclass: it makes per-sub-batch inputs of its
    own in `prepare` and adds to or replaces the text-image terms in `text_image_terms`, whose
    terms `text_weights` weighs; nothing else differs."""

    def __init__(self, weights: LossWeights, gather_negatives: bool = False) -> None:
        self.weights = weights
        self.gather = gather_negatives
        # the weight of each term `text_image_terms` returns, in the order they are summed
        self.text_weights: dict[str, float] = {"sent": weights.sent, "word": weights.word}

    def prepare(self, captions: Sequence[str], step: int, parts: Sequence[slice]) -> list[Any]:
        """What each sub-batch carries for this objective besides the paper's inputs
        (`SubBatch.extra`): nothing, for the paper's."""
        return [None] * len(parts)

    def text_image_terms(self, half: DiscriminatorOutput, sub: Captions) -> dict[str, torch.Tensor]:
        """L_sent and L_word of one half of D's output against the sub-batch's captions."""
        w, g = self.weights, self.gather
        terms = {}
        if w.sent:
            terms["sent"] = sentence_contrastive_loss(
                gather(half.features, g), gather(half.sentence, g), w.temperature
            )
        if w.word:
            terms["word"] = word_region_contrastive_loss(
                gather(half.regions, g),
                gather(sub.words, g),
                gather(sub.mask, g),
                w.rho1,
                w.rho2,
                w.rho3,
            )
        return terms

    def _adversarial_and_text(
        self, adversarial: torch.Tensor, half: DiscriminatorOutput, sub: Captions
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_adv + the weighted text-image terms, and every term by name."""
        terms = {"adv": adversarial, **self.text_image_terms(half, sub)}
        total = terms["adv"]
        for name, weight in self.text_weights.items():
            total = total + weight * terms.get(name, 0.0)
        return total, terms

    def discriminator_loss(
        self, out: DiscriminatorOutput, sub: Captions
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_D from D([real; fake]); returns the total and its named terms (for logging)."""
        w = self.weights
        real, fake = split_real_fake(out)
        if w.adversarial == "hinge":
            adversarial = hinge_d_loss(real.logits, fake.logits)
        else:
            adversarial = dual_contrastive_d_loss(real.logits, fake.logits)
        total, terms = self._adversarial_and_text(adversarial, real, sub)
        if w.infomax_d:
            terms["infomax"] = _infomax(real)
            total = total + w.infomax_d * terms["infomax"]
        return total, terms

    def generator_loss(
        self,
        out: DiscriminatorOutput,
        sub: Captions,
        cnn_real: torch.Tensor | None = None,
        cnn_fake: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_G from the same D([real; fake]); cnn_* are pretrained-CNN features when enabled."""
        w, g = self.weights, self.gather
        real, fake = split_real_fake(out)
        if w.adversarial == "hinge":
            adversarial = hinge_g_loss(fake.logits)
        else:
            adversarial = dual_contrastive_g_loss(real.logits, fake.logits)
        total, terms = self._adversarial_and_text(adversarial, fake, sub)
        if w.img:
            terms["img"] = image_contrastive_loss(
                gather(fake.features, g), gather(real.features, g), w.temperature
            )
            total = total + w.img * terms["img"]
        if w.img_cnn and cnn_real is not None and cnn_fake is not None:
            terms["img_cnn"] = image_contrastive_loss(
                gather(cnn_real, g), gather(cnn_fake, g), w.temperature
            )
            total = total + w.img_cnn * terms["img_cnn"]
        if w.infomax_g:
            terms["infomax"] = _infomax(fake)
            total = total + w.infomax_g * terms["infomax"]
        return total, terms


class BatchNormStatsFrozen:
    """Run a module in train mode without updating BN running statistics (the official D-only
    step discards G's new batch statistics). `save()` / `restore()` do the same by hand, for a
    step that turns out to be skipped."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def save(self) -> BatchNormStatsFrozen:
        self.buffers = {
            k: v.clone()
            for k, v in self.module.named_buffers()
            if "running" in k or "num_batches" in k
        }
        return self

    def restore(self) -> None:
        with torch.no_grad():
            named = dict(self.module.named_buffers())
            for k, v in self.buffers.items():
                named[k].copy_(v)

    def __enter__(self) -> None:
        self.save()

    def __exit__(self, *exc) -> None:
        self.restore()
