"""The losses of the swap-negative experiment (not in the paper): L_sent and L_word with one hard
negative per image, and L_swap, the ranking of a caption above its edited copy alone.

A hard negative is one more candidate against its own image only: a column of the image ->
captions cross-entropy of that row, nothing else. The paper's versions (without it) are
`models.losses.sentence_contrastive_loss` and `word_region_contrastive_loss`; with every
negative marked not valid, these give the same value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.losses import RHO1, RHO2, RHO3, TAU, l2_normalize, word_region_scores

__all__ = [
    "mismatch_hinge_loss",
    "sentence_contrastive_loss_with_negatives",
    "swap_ranking_loss",
    "word_region_contrastive_loss_with_negatives",
]


def _full_precision(tensor: torch.Tensor) -> torch.autocast:
    """Autocast off on `tensor`'s device: the logits are scaled by 1/tau or rho3 (as the paper's
    losses, which compute in float32 for the same reason)."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def _require(name: str, negatives: torch.Tensor, shape: torch.Size, valid: torch.Tensor) -> None:
    if negatives.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(negatives.shape)}")
    if valid.shape != shape[:1] or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape ({shape[0]},), "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )


def _require_pairs(
    image_features: torch.Tensor,
    sentence_features: torch.Tensor,
    negatives: torch.Tensor,
    valid: torch.Tensor,
) -> None:
    """(B, d) image and sentence features, and one (B, d) negative per row with (B,) valid."""
    if image_features.dim() != 2 or image_features.shape != sentence_features.shape:
        raise ValueError(
            "image_features and sentence_features must both have shape (B, d), got "
            f"{tuple(image_features.shape)} and {tuple(sentence_features.shape)}"
        )
    _require("negatives", negatives, sentence_features.shape, valid)


def _cross_entropy_with_negatives(
    logits: torch.Tensor, hard: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Symmetric CE of (B, B) logits [row i = image i] where row i also holds hard[i] (B,) as
    one more candidate (-inf where `valid` is False); the columns are the paper's."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    rows = torch.cat([logits, hard.masked_fill(~valid, float("-inf"))[:, None]], dim=1)  # (B, B+1)
    return F.cross_entropy(rows, targets) + F.cross_entropy(logits.t(), targets)


def sentence_contrastive_loss_with_negatives(
    image_features: torch.Tensor,
    sentence_features: torch.Tensor,
    negatives: torch.Tensor,
    valid: torch.Tensor,
    temperature: float = TAU,
) -> torch.Tensor:
    """L_sent (eq. 3-4) where image i also ranks its caption above negatives[i].

    Args:
        image_features: (B, d) phi(x).
        sentence_features: (B, d) V e_s of each image's caption.
        negatives: (B, d) V e_s of each caption's edited copy.
        valid: (B,) bool, the negatives that count (False where there was nothing to edit).
        temperature: tau.
    Returns:
        scalar float32 loss.
    """
    _require_pairs(image_features, sentence_features, negatives, valid)
    with _full_precision(image_features):
        image_hat = l2_normalize(image_features.float())  # (B, d)
        sentence_hat = l2_normalize(sentence_features.float())  # (B, d)
        logits = image_hat @ sentence_hat.t() / temperature  # (B, B)
        hard = (image_hat * l2_normalize(negatives.float())).sum(1) / temperature  # (B,)
        return _cross_entropy_with_negatives(logits, hard, valid)


def word_region_contrastive_loss_with_negatives(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    negative_words: torch.Tensor,
    negative_mask: torch.Tensor,
    valid: torch.Tensor,
    rho1: float = RHO1,
    rho2: float = RHO2,
    rho3: float = RHO3,
) -> torch.Tensor:
    """L_word (eq. 7) where image i also scores the edited caption i as one more candidate.

    Args:
        regions: (B, N, D) region features; words (B, T, D), word_mask (B, T) bool.
        negative_words, negative_mask: (B, T, D) and (B, T), each caption's edited copy.
        valid: (B,) bool, the negatives that count.
        rho1, rho2, rho3: as `models.losses.word_region_contrastive_loss`.
    Returns:
        scalar float32 loss.
    """
    scores = word_region_scores(regions, words, word_mask, rho1=rho1, rho2=rho2)  # (B, B)
    if scores.shape[0] != scores.shape[1]:
        raise ValueError(
            f"regions and words need the same batch size, got {regions.shape[0]} and "
            f"{words.shape[0]}"
        )
    _require("negative_words", negative_words, words.shape, valid)
    # (B, B) like `scores`; only its diagonal (caption i's negative against image i) is read
    hard = word_region_scores(regions, negative_words, negative_mask, rho1=rho1, rho2=rho2)
    with _full_precision(scores):
        # scores is [caption i, image j]: its transpose holds one row per image
        return _cross_entropy_with_negatives(rho3 * scores.t(), rho3 * hard.diagonal(), valid)


def swap_ranking_loss(
    image_features: torch.Tensor,
    sentence_features: torch.Tensor,
    negatives: torch.Tensor,
    valid: torch.Tensor,
    temperature: float = TAU,
) -> torch.Tensor:
    """L_swap: image i ranks its own caption above its edited copy alone.

    The two-way cross-entropy -log softmax([s_i, s_i^-])[0] = softplus((s_i^- - s_i) / tau),
    with s the cosine similarity of eq. 4, averaged over the valid rows. Inside L_sent the hard
    negative is one candidate among B; here it is the only one, so its weight can be set apart
    (experiments.w_swap).

    Args:
        image_features: (B, d) phi(x).
        sentence_features: (B, d) V e_s of each image's caption.
        negatives: (B, d) V e_s of each caption's edited copy.
        valid: (B,) bool, the rows that count.
        temperature: tau.
    Returns:
        scalar float32 loss; 0 (still on the graph) when no row is valid.
    """
    _require_pairs(image_features, sentence_features, negatives, valid)
    with _full_precision(image_features):
        image_hat = l2_normalize(image_features.float())  # (B, d)
        positive = (image_hat * l2_normalize(sentence_features.float())).sum(1)  # (B,)
        negative = (image_hat * l2_normalize(negatives.float())).sum(1)  # (B,)
        losses = F.softplus((negative - positive) / temperature)  # (B,)
        return (losses * valid).sum() / valid.sum().clamp(min=1)


def mismatch_hinge_loss(
    logits: torch.Tensor,
    image_features: torch.Tensor,
    sentence_features: torch.Tensor,
    negatives: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """L_mismatch: a real image with its edited caption scored as fake, in D's hinge.

    The matching-aware discriminator of GAN-INT-CLS (Reed et al. 2016, "Generative Adversarial
    Text to Image Synthesis", Sec. 4.1) with the swap negative as the mismatched caption: D's
    projection logit l(x, e) = w.phi(x) + phi(x).V e, taken with the edited caption's V e^-
    in place of the caption's, is pushed below -1, so D's *adversarial* score (the one G's hinge
    reads) and not only its contrastive scores tells the relation or the binding apart.

    Args:
        logits: (B,) l(x, e) of the real images with their own captions.
        image_features: (B, d) phi(x).
        sentence_features: (B, d) V e_s of each image's caption.
        negatives: (B, d) V e_s of each caption's edited copy.
        valid: (B,) bool, the rows that count.
    Returns:
        scalar float32 loss, mean of relu(1 + l(x, e^-)) over the valid rows; 0 (still on the
        graph) when no row is valid.
    """
    if logits.dim() != 1 or image_features.shape != sentence_features.shape:
        raise ValueError(
            f"expected logits (B,) and features (B, d) twice, got {tuple(logits.shape)}, "
            f"{tuple(image_features.shape)} and {tuple(sentence_features.shape)}"
        )
    _require("negatives", negatives, sentence_features.shape, valid)
    with _full_precision(image_features):
        features = image_features.float()
        own = (features * sentence_features.float()).sum(1)  # (B,)
        edited = (features * negatives.float()).sum(1)  # (B,)
        losses = F.relu(1.0 + logits.float() - own + edited)  # (B,)
    weights = valid.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)
