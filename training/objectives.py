"""The XMC-GAN objectives grouped into the two phases of a step (paper Sec. 4, Alg. 1).

L_D = L_adv(D) + w_sent L_sent(real) + w_word L_word(real)           [+ beta L_infomax(real)]
L_G = L_adv(G) + w_sent L_sent(fake) + w_word L_word(fake)
      + w_img L_img(D features: fake vs real) [+ w_img L_img(pretrained CNN)]
      [+ alpha L_infomax(fake)]

With TrainConfig.swap_negatives (not in the paper), L_sent and L_word of both phases also rank
each image's caption above one edited copy of it (`HardNegatives`, `training/negatives.py`);
TrainConfig.w_swap adds that ranking once more on its own, + w_swap L_swap in both phases
(`pair_ranking_loss`: the caption against its edited copy alone).

Both phases read one forward of D over [real; fake] (the official code concatenates them), so a
step can update D and G from the same forward, as the official `train_g_d` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.discriminator import DiscriminatorOutput
from models.losses import (
    RHO1,
    RHO2,
    RHO3,
    TAU,
    contrastive_loss,
    dual_contrastive_d_loss,
    dual_contrastive_g_loss,
    hinge_d_loss,
    hinge_g_loss,
    infomax_loss,
    pair_ranking_loss,
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
    swap: float = 0.0  # L_swap: caption vs its edited copy alone (needs swap negatives)
    temperature: float = TAU  # tau of L_sent and L_img
    rho1: float = RHO1
    rho2: float = RHO2
    rho3: float = RHO3

    @classmethod
    def from_config(cls, c) -> LossWeights:
        """The weights a TrainConfig asks for: a loss left out of `losses` has weight 0."""
        return cls(
            sent=c.w_sent if "sent" in c.losses else 0.0,
            word=c.w_word if "word" in c.losses else 0.0,
            img=c.w_img if "img" in c.losses else 0.0,
            img_cnn=c.w_img if c.pretrained_image_contrastive and c.image_encoder else 0.0,
            adversarial=c.adversarial,
            infomax_d=c.infomax_beta if c.infomax else 0.0,
            infomax_g=c.infomax_alpha if c.infomax else 0.0,
            swap=c.w_swap if c.swap_negatives else 0.0,
            temperature=c.tau,
            rho1=c.rho1,
            rho2=c.rho2,
            rho3=c.rho3,
        )


def _gather(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """All-gather along the batch with gradients, for negatives from every device."""
    if not enabled:
        return x
    import warnings

    import torch.distributed.nn.functional as dist_fn

    with warnings.catch_warnings():  # its deprecation notice would print at every step
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(dist_fn.all_gather(x.contiguous()))


def _split(out: DiscriminatorOutput) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
    """The [real; fake] D output -> (real, fake)."""

    def half(t: torch.Tensor | None, first: bool) -> torch.Tensor | None:
        if t is None:
            return None
        n = t.shape[0] // 2
        return t[:n] if first else t[n:]

    parts = []
    for first in (True, False):
        parts.append(
            DiscriminatorOutput(
                logits=half(out.logits, first),
                features=half(out.features, first),
                sentence=out.sentence,
                regions=half(out.regions, first),
                infomax_local=half(out.infomax_local, first),
                infomax_global=half(out.infomax_global, first),
            )
        )
    return parts[0], parts[1]


@dataclass
class HardNegatives:
    """One edited caption per image (TrainConfig.swap_negatives, `training/negatives.py`),
    one more candidate against that image alone in L_sent and L_word."""

    sentence: torch.Tensor  # (n, F) V e_s of the edited captions (D's sentence projection)
    words: torch.Tensor  # (n, T, D_w)
    mask: torch.Tensor  # (n, T) bool
    valid: torch.Tensor  # (n,) bool: False where the caption had nothing to edit


def _text_image_terms(
    half: DiscriminatorOutput,
    words: torch.Tensor,
    mask: torch.Tensor,
    w: LossWeights,
    gather: bool,
    negatives: HardNegatives | None = None,
) -> dict[str, torch.Tensor]:
    terms = {}
    hard = {}
    if negatives is not None:
        valid = _gather(negatives.valid, gather)
        hard = {"sent": (_gather(negatives.sentence, gather), valid)}
        hard["word"] = (_gather(negatives.words, gather), _gather(negatives.mask, gather), valid)
    if w.sent:
        terms["sent"] = contrastive_loss(
            _gather(half.features, gather),
            _gather(half.sentence, gather),
            w.temperature,
            *hard.get("sent", ()),
        )
    if w.word:
        terms["word"] = word_region_contrastive_loss(
            _gather(half.regions, gather),
            _gather(words, gather),
            _gather(mask, gather),
            w.rho1,
            w.rho2,
            w.rho3,
            *hard.get("word", ()),
        )
    if w.swap and negatives is not None:
        terms["swap"] = pair_ranking_loss(
            half.features, half.sentence, negatives.sentence, negatives.valid, w.temperature
        )
    return terms


def _text_total(terms: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    """L_adv + w_sent L_sent + w_word L_word + w_swap L_swap, over the terms present."""
    total = terms["adv"] + w.sent * terms.get("sent", 0.0) + w.word * terms.get("word", 0.0)
    return total + w.swap * terms.get("swap", 0.0)


def discriminator_loss(
    out: DiscriminatorOutput,
    words: torch.Tensor,
    mask: torch.Tensor,
    w: LossWeights,
    gather: bool = False,
    negatives: HardNegatives | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_D from D([real; fake]); returns the total and its named terms (for logging)."""
    real, fake = _split(out)
    if w.adversarial == "hinge":
        terms = {"adv": hinge_d_loss(real.logits, fake.logits)}
    else:
        terms = {"adv": dual_contrastive_d_loss(real.logits, fake.logits)}
    terms.update(_text_image_terms(real, words, mask, w, gather, negatives))
    total = _text_total(terms, w)
    if w.infomax_d:
        terms["infomax"] = infomax_loss(real.infomax_local, real.infomax_global)
        total = total + w.infomax_d * terms["infomax"]
    return total, terms


def generator_loss(
    out: DiscriminatorOutput,
    words: torch.Tensor,
    mask: torch.Tensor,
    w: LossWeights,
    gather: bool = False,
    cnn_real: torch.Tensor | None = None,
    cnn_fake: torch.Tensor | None = None,
    negatives: HardNegatives | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_G from the same D([real; fake]); cnn_* are pretrained-CNN features when enabled."""
    real, fake = _split(out)
    if w.adversarial == "hinge":
        terms = {"adv": hinge_g_loss(fake.logits)}
    else:
        terms = {"adv": dual_contrastive_g_loss(real.logits, fake.logits)}
    terms.update(_text_image_terms(fake, words, mask, w, gather, negatives))
    total = _text_total(terms, w)
    if w.img:
        terms["img"] = contrastive_loss(
            _gather(fake.features, gather), _gather(real.features, gather), w.temperature
        )
        total = total + w.img * terms["img"]
    if w.img_cnn and cnn_real is not None and cnn_fake is not None:
        terms["img_cnn"] = contrastive_loss(
            _gather(cnn_real, gather), _gather(cnn_fake, gather), w.temperature
        )
        total = total + w.img_cnn * terms["img_cnn"]
    if w.infomax_g:
        terms["infomax"] = infomax_loss(fake.infomax_local, fake.infomax_global)
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
