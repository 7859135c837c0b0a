"""XMC-GAN losses as small pure functions.

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
    "contrastive_loss",
    "dual_contrastive_d_loss",
    "dual_contrastive_g_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "infomax_loss",
    "l2_normalize",
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


def _symmetric_cross_entropy(
    logits: torch.Tensor, hard: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """CE(rows, arange) + CE(columns, arange) for square (B, B) logits, each a batch mean. With
    `hard` (B,), row i's CE has one more candidate, hard[i] (row i against its own hard
    negative; -inf where `valid` is False)."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    rows = logits
    if hard is not None:
        if valid is not None:
            hard = hard.masked_fill(~valid, float("-inf"))
        rows = torch.cat([logits, hard[:, None]], dim=1)  # (B, B + 1)
    return F.cross_entropy(rows, targets) + F.cross_entropy(logits.t(), targets)


def _require_negatives(
    name: str, negatives: torch.Tensor, shape: torch.Size, valid: torch.Tensor | None
) -> None:
    if negatives.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(negatives.shape)}")
    if valid is not None and (valid.shape != shape[:1] or valid.dtype != torch.bool):
        raise ValueError(
            f"negatives_valid must be a bool tensor of shape ({shape[0]},), "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )


# ----------------------------------------------------------------------------- XMC-GAN contrastive


def contrastive_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float = TAU,
    b_negatives: torch.Tensor | None = None,
    negatives_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of `a` and `b` (XMC-GAN eq. 3-4).

    Used for L_sent (sentence embedding vs. image feature) and both L_img (real vs. fake image
    features). Rows are L2-normalised, so a.bᵀ is the cosine similarity of eq. 4; the loss is
    the mean CE over rows plus the mean CE over columns, summed as in the official code.

    Args:
        a: (B, d) features; row i is paired with row i of `b`.
        b: (B, d) features.
        temperature: tau in eq. 4.
        b_negatives: optional (B, d) hard negatives (not in the paper): row i is one more
            candidate against a's row i alone, a column of the a -> b cross-entropy only (say
            caption i with its relation reversed, against image i).
        negatives_valid: (B,) bool, the rows of `b_negatives` that count (default: all).
    Returns:
        scalar float32 loss.
    """
    _require_dims("a", a, 2, "(B, d)")
    if a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(
            "a and b must both have shape (B, d) with B >= 1, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    _require_positive(temperature=temperature)
    with _full_precision(a):
        a_hat = l2_normalize(a.float())  # (B, d)
        b_hat = l2_normalize(b.float())  # (B, d)
        logits = a_hat @ b_hat.t() / temperature  # (B, B)
        if b_negatives is None:
            return _symmetric_cross_entropy(logits)
        _require_negatives("b_negatives", b_negatives, b.shape, negatives_valid)
        hard = (a_hat * l2_normalize(b_negatives.float())).sum(1) / temperature  # (B,)
        return _symmetric_cross_entropy(logits, hard, negatives_valid)


def pair_ranking_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    b_negatives: torch.Tensor,
    negatives_valid: torch.Tensor | None = None,
    temperature: float = TAU,
) -> torch.Tensor:
    """Row i of `a` ranks its own b_i above its hard negative alone (not in the paper).

    The two-way cross-entropy -log softmax([s_i, s_i^-])[0] = softplus((s_i^- - s_i) / tau),
    with s the cosine similarity of eq. 4, averaged over the valid rows. Inside L_sent the hard
    negative is one candidate among B; here it is the only one, so its weight can be set apart
    (TrainConfig.w_swap).

    Args:
        a: (B, d) features (image features).
        b: (B, d) features paired with `a` row by row (V e_s of each image's caption).
        b_negatives: (B, d) one hard negative per row (V e_s of the edited caption).
        negatives_valid: (B,) bool, the rows that count (default: all).
        temperature: tau.
    Returns:
        scalar float32 loss; 0 (still on the graph) when no row is valid.
    """
    _require_dims("a", a, 2, "(B, d)")
    if a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(
            "a and b must both have shape (B, d) with B >= 1, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    _require_negatives("b_negatives", b_negatives, b.shape, negatives_valid)
    _require_positive(temperature=temperature)
    with _full_precision(a):
        a_hat = l2_normalize(a.float())  # (B, d)
        positive = (a_hat * l2_normalize(b.float())).sum(1)  # (B,)
        negative = (a_hat * l2_normalize(b_negatives.float())).sum(1)  # (B,)
        losses = F.softplus((negative - positive) / temperature)  # (B,)
        if negatives_valid is None:
            return losses.mean()
        count = negatives_valid.sum()
        return (losses * negatives_valid).sum() / count.clamp(min=1)


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
    negative_words: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
    negatives_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_word (XMC-GAN eq. 7): symmetric CE over logits rho3 * S_word, summed.

    Args:
        regions: (B, N, D) image region features; image i is paired with caption i.
        words: (B, T, D) word features.
        word_mask: (B, T) bool, True = real word.
        rho1, rho2: see `word_region_scores`.
        rho3: logit scale (gamma3).
        negative_words, negative_mask: optional (B, T, D) and (B, T) hard-negative captions
            (not in the paper): caption i is one more candidate against image i alone, a column
            of the image -> captions cross-entropy only.
        negatives_valid: (B,) bool, the hard negatives that count (default: all).
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
    if negative_words is None:
        with _full_precision(scores):
            return _symmetric_cross_entropy(rho3 * scores)
    _require_negatives("negative_words", negative_words, words.shape, negatives_valid)
    # (B, B) like `scores`; only its diagonal (caption i's negative against image i) is read
    hard = word_region_scores(regions, negative_words, negative_mask, rho1=rho1, rho2=rho2)
    with _full_precision(scores):
        # (B, B): [caption i, image j]; the image -> captions CE reads its transpose
        return _symmetric_cross_entropy(rho3 * scores.t(), rho3 * hard.diagonal(), negatives_valid)


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
