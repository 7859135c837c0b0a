"""The XMC-GAN losses as small pure functions, each named after the paper's term.

  L_sent  sentence_contrastive_loss     eq. 3-4: image features against sentence embeddings
  L_word  word_region_contrastive_loss  eq. 5-7: words against image regions
  L_img   image_contrastive_loss        eq. 3-4: fake image features against real ones
  L_adv   hinge_d_loss, hinge_g_loss    the adversarial loss XMC-GAN trains with
and the two sibling designs of the survey, which a run may choose instead or in addition:
  dual_contrastive_d_loss, dual_contrastive_g_loss (DualCL)   and   infomax_loss (InfoMax-GAN).
The project's own experiments (hard negatives, their ranking term) are not here: they live in
`training/experiments/`, so this file is the paper and its siblings alone.

References:
  XMC-GAN  -- Zhang et al., "Cross-Modal Contrastive Learning for Text-to-Image Generation",
              CVPR 2021 (sentence/image contrastive loss eq. 3-4, word-region eq. 5-7).
  Hinge    -- Lim & Ye 2017 / Miyato et al. 2018 (the adversarial loss XMC-GAN trains with).
  DualCL   -- Yu et al., "Dual Contrastive Loss and Attention for GANs", ICCV 2021.
  InfoMax  -- Lee et al., "InfoMax-GAN", WACV 2021 (InfoNCE between local and global D features).

Every function computes in float32, even when called inside a bf16/fp16 autocast region: inputs
are cast with `.float()` and autocast is switched off for the body, because softmax/logsumexp over
logits scaled by 1/tau = 10 or rho3 = 50 lose too much precision in half types.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.layers import l2_normalize

__all__ = [
    "dual_contrastive_d_loss",
    "dual_contrastive_g_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "image_contrastive_loss",
    "infomax_loss",
    "l2_normalize",
    "sentence_contrastive_loss",
    "word_region_contrastive_loss",
    "word_region_scores",
]

# The paper's constants (XMC-GAN sec. 4 / official losses.py); the defaults of every function
# below and of training's LossWeights.
TAU = 0.1  # temperature of L_sent and L_img (eq. 4)
RHO1 = 5.0  # word -> region attention sharpness (eq. 5)
RHO2 = 5.0  # log-sum-exp aggregation over words (eq. 6)
RHO3 = 50.0  # scale of the word-region logits (eq. 7)


# ----------------------------------------------------------------------------- primitives


def _full_precision(tensor: torch.Tensor) -> torch.autocast:
    """A context that disables autocast on `tensor`'s device type."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def _require_dims(name: str, tensor: torch.Tensor, dims: int, layout: str) -> None:
    if tensor.dim() != dims:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(tensor.shape)}")


def _flat_logits(name: str, logits: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) discriminator logits -> (B,) float32."""
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() != 1 or logits.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (B,) or (B, 1) with B >= 1, got {tuple(logits.shape)}"
        )
    return logits.float()


def _symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """CE(rows, arange) + CE(columns, arange) for square (B, B) logits, each a batch mean: the
    two directions of eq. 4 and eq. 7, summed as in the official code."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)


def _require_pairs(names: tuple[str, str], a: torch.Tensor, b: torch.Tensor) -> None:
    _require_dims(names[0], a, 2, "(B, d)")
    if a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(
            f"{names[0]} and {names[1]} must both have shape (B, d) with B >= 1, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


# ----------------------------------------------------------------------------- XMC-GAN contrastive


def _paired_contrastive(
    names: tuple[str, str], a: torch.Tensor, b: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of (B, d) `a` and `b` (eq. 4): cosine logits
    a_hat . b_hat / tau, symmetric cross-entropy."""
    _require_pairs(names, a, b)
    _require_positive(temperature=temperature)
    with _full_precision(a):
        a_hat = l2_normalize(a.float())  # (B, d)
        b_hat = l2_normalize(b.float())  # (B, d)
        return _symmetric_cross_entropy(a_hat @ b_hat.t() / temperature)  # logits (B, B)


def sentence_contrastive_loss(
    image_features: torch.Tensor, sentence_features: torch.Tensor, temperature: float = TAU
) -> torch.Tensor:
    """L_sent (XMC-GAN eq. 3-4): each image against every caption of the batch and back.

    Args:
        image_features: (B, d) phi(x) of D (or of a pretrained encoder); row i shows caption i.
        sentence_features: (B, d) V e_s, the sentence embeddings projected by D.
        temperature: tau in eq. 4.
    Returns:
        scalar float32: mean CE image -> captions + mean CE caption -> images.
    """
    names = ("image_features", "sentence_features")
    return _paired_contrastive(names, image_features, sentence_features, temperature)


def image_contrastive_loss(
    image_features: torch.Tensor, other_features: torch.Tensor, temperature: float = TAU
) -> torch.Tensor:
    """L_img (XMC-GAN eq. 3-4 on image pairs): each generated image against the real images of
    the batch, its own real image the positive, and back. Symmetric in its two arguments.

    Args:
        image_features: (B, d) features of one side (D's phi, or a pretrained CNN's).
        other_features: (B, d) features of the other side; row i pairs with row i.
        temperature: tau in eq. 4.
    Returns:
        scalar float32 loss.
    """
    names = ("image_features", "other_features")
    return _paired_contrastive(names, image_features, other_features, temperature)


def word_region_scores(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    rho1: float = RHO1,
    rho2: float = RHO2,
) -> torch.Tensor:
    """Word-region matching score S_word of every caption against every image (XMC-GAN eq. 5-6).

    For caption i and image j, word t attends over image j's regions with
    alpha_tn = softmax_n(rho1 * cos(w_t, r_n)); its context is c_t = sum_n alpha_tn * r_n / |r_n|;
    then S[i, j] = log(sum_{t valid} exp(rho2 * cos(w_t, c_t))) / rho2.

    Padded words (word_mask False) contribute nothing, whatever their values (even inf/NaN).
    A caption with no valid word has an empty sum (log 0 = -inf); it scores 0 against every
    image instead, so the logits stay finite and its words receive zero gradient.

    Args:
        regions: (B_img, N, D) image region features.
        words: (B_txt, T, D) word features.
        word_mask: (B_txt, T) bool, True = real word.
        rho1: attention sharpness (gamma1 in AttnGAN).
        rho2: log-sum-exp aggregation sharpness (gamma2).
    Returns:
        (B_txt, B_img) float32; entry [i, j] scores caption i against image j.
    """
    _require_dims("regions", regions, 3, "(B, N, D)")
    _require_dims("words", words, 3, "(B, T, D)")
    if regions.shape[1] == 0 or words.shape[1] == 0 or regions.shape[2] != words.shape[2]:
        raise ValueError(
            "regions (B, N, D) and words (B, T, D) need N >= 1, T >= 1 and the same D, "
            f"got {tuple(regions.shape)} and {tuple(words.shape)}"
        )
    if word_mask.shape != words.shape[:2] or word_mask.dtype != torch.bool:
        raise ValueError(
            f"word_mask must be a bool tensor of shape {tuple(words.shape[:2])}, "
            f"got {word_mask.dtype} {tuple(word_mask.shape)}"
        )
    _require_positive(rho1=rho1, rho2=rho2)
    with _full_precision(words):
        # Zero padded words first, so garbage there can reach neither the output nor the gradient.
        words = words.float().masked_fill(~word_mask[..., None], 0.0)
        word_hat = l2_normalize(words)  # (Bt, T, D)
        region_hat = l2_normalize(regions.float())  # (Bi, N, D)
        attention = torch.einsum("itd,jnd->ijtn", word_hat, region_hat) * rho1  # (Bt, Bi, T, N)
        alpha = attention.softmax(dim=-1)  # eq. 5, over regions
        context = torch.einsum("ijtn,jnd->ijtd", alpha, region_hat)  # (Bt, Bi, T, D)
        word_cos = (word_hat[:, None] * l2_normalize(context)).sum(-1)  # (Bt, Bi, T)
        has_words = word_mask.any(dim=1)  # (Bt,)
        # Empty captions sum over their (zeroed) positions to stay finite; replaced by 0 below.
        summed = word_mask | ~has_words[:, None]  # (Bt, T)
        scaled = (rho2 * word_cos).masked_fill(~summed[:, None, :], float("-inf"))
        scores = torch.logsumexp(scaled, dim=-1) / rho2  # (Bt, Bi), eq. 6
        return torch.where(has_words[:, None], scores, torch.zeros_like(scores))


def word_region_contrastive_loss(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    rho1: float = RHO1,
    rho2: float = RHO2,
    rho3: float = RHO3,
) -> torch.Tensor:
    """L_word (XMC-GAN eq. 7): symmetric CE over logits rho3 * S_word, summed.

    Args:
        regions: (B, N, D) image region features; image i is paired with caption i.
        words: (B, T, D) word features.
        word_mask: (B, T) bool, True = real word.
        rho1, rho2: see `word_region_scores`.
        rho3: logit scale (gamma3).
    Returns:
        scalar float32: mean CE caption -> images + mean CE image -> captions.
    """
    _require_positive(rho3=rho3)
    scores = word_region_scores(regions, words, word_mask, rho1=rho1, rho2=rho2)  # (B, B)
    if scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(
            "regions and words need the same batch size B >= 1, "
            f"got {regions.shape[0]} and {words.shape[0]}"
        )
    with _full_precision(scores):
        return _symmetric_cross_entropy(rho3 * scores)


# ----------------------------------------------------------------------------- adversarial


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    if real_logits.numel() == 0 or fake_logits.numel() == 0:
        raise ValueError("hinge_d_loss needs non-empty real_logits and fake_logits")
    with _full_precision(real_logits):
        real_term = F.relu(1.0 - real_logits.float()).mean()
        fake_term = F.relu(1.0 + fake_logits.float()).mean()
        return real_term + fake_term


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -mean(D(G(z)))."""
    if fake_logits.numel() == 0:
        raise ValueError("hinge_g_loss needs non-empty fake_logits")
    with _full_precision(fake_logits):
        return -fake_logits.float().mean()


def _positive_against_all(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """mean_p -log(e^{positives[p]} / (e^{positives[p]} + sum_q e^{negatives[q]})).

    positives: (P,), negatives: (Q,). Each positive competes with every negative.
    """
    logits = torch.cat(
        [positives[:, None], negatives[None, :].expand(positives.shape[0], -1)], dim=1
    )  # (P, 1 + Q); column 0 is the positive
    targets = torch.zeros(positives.shape[0], dtype=torch.long, device=positives.device)
    return F.cross_entropy(logits, targets)


def dual_contrastive_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Dual contrastive discriminator loss (Yu et al. 2021, eq. 1-2).

    L_real = E_x[-log(e^{D(x)} / (e^{D(x)} + sum_z e^{D(G(z))}))]
    L_fake = E_z[-log(e^{-D(G(z))} / (e^{-D(G(z))} + sum_x e^{-D(x)}))]
    Returns L_real + L_fake (scalar float32). Logits are (B,) or (B, 1); the real and fake
    batch sizes may differ.
    """
    real = _flat_logits("real_logits", real_logits)  # (Br,)
    fake = _flat_logits("fake_logits", fake_logits)  # (Bf,)
    with _full_precision(real):
        return _positive_against_all(real, fake) + _positive_against_all(-fake, -real)


def dual_contrastive_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Dual contrastive generator loss (Yu et al. 2021, eq. 3): real and fake swap roles.

    L_G = E_z[-log(e^{D(G(z))} / (e^{D(G(z))} + sum_x e^{D(x)}))]
        + E_x[-log(e^{-D(x)} / (e^{-D(x)} + sum_z e^{-D(G(z))}))]
    Every dL_G/dD(G(z)) is negative: the generator is always pushed to raise its logits.
    """
    real = _flat_logits("real_logits", real_logits)  # (Br,)
    fake = _flat_logits("fake_logits", fake_logits)  # (Bf,)
    with _full_precision(real):
        return _positive_against_all(fake, real) + _positive_against_all(-real, -fake)


# ----------------------------------------------------------------------------- InfoMax-GAN


def infomax_loss(
    local_features: torch.Tensor, global_features: torch.Tensor, self_score: float = -10.0
) -> torch.Tensor:
    """InfoNCE between local and global discriminator features (InfoMax-GAN, DIM convention).

    Scores are plain dot products s[i, j, k] = g_i . l_{j,k} (no temperature). For every
    (image i, location k) the positive s[i, i, k] competes with all B*K scores s[i, j, k'];
    those of image i itself (j = i) are not negatives: they are replaced by the constant
    `self_score` (as the reference implementation does, so they still add e^{self_score} to
    the denominator but carry no gradient). Returns the mean CE over all (i, k).

    Args:
        local_features: (B, K, R) projected local features (K locations, e.g. H*W).
        global_features: (B, R) projected global features.
        self_score: logit that replaces the own-image scores.
    Returns:
        scalar float32 loss.
    """
    _require_dims("local_features", local_features, 3, "(B, K, R)")
    _require_dims("global_features", global_features, 2, "(B, R)")
    batch, locations, _ = local_features.shape
    if global_features.shape != (batch, local_features.shape[2]) or batch == 0 or locations == 0:
        raise ValueError(
            "local_features (B, K, R) and global_features (B, R) must agree with B, K >= 1, "
            f"got {tuple(local_features.shape)} and {tuple(global_features.shape)}"
        )
    with _full_precision(local_features):
        local = local_features.float()
        glob = global_features.float()
        positive = torch.einsum("ikr,ir->ik", local, glob)  # (B, K)
        scores = torch.einsum("ir,jkr->ijk", glob, local)  # (B, B, K)
        own = torch.eye(batch, dtype=torch.bool, device=scores.device)[:, :, None]  # (B, B, 1)
        negatives = scores.masked_fill(own, self_score).reshape(batch, 1, batch * locations)
        logits = torch.cat(
            [positive[:, :, None], negatives.expand(-1, locations, -1)], dim=-1
        )  # (B, K, 1 + B*K); index 0 is the positive
        return (torch.logsumexp(logits, dim=-1) - positive).mean()
