"""Walking between two (caption, seed) endpoints: latents slerped, text features lerped
(`XMCGANPipeline.interpolate`)."""

from __future__ import annotations

import torch

from models.text_encoder import TextFeatures

__all__ = ["interpolate_features", "lerp", "slerp"]


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a, b (*S), t (N,) -> (N, *S)."""
    t = t.view(-1, *([1] * a.dim()))
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of two latents a, b (D,) at t (N,) -> (N, D): it keeps the norm
    of a Gaussian z on its shell, where a straight line would pass through low-norm latents."""
    unit_a, unit_b = a / a.norm().clamp_min(1e-12), b / b.norm().clamp_min(1e-12)
    # the angle from the chord, exact near 0 and pi where arccos of the cosine is not in float32
    omega = 2.0 * torch.atan2((unit_a - unit_b).norm(), (unit_a + unit_b).norm())
    if float(omega.sin()) < 1e-6:  # (anti)parallel: the great circle is not unique
        return lerp(a, b, t)
    weights_a = torch.sin((1.0 - t) * omega) / omega.sin()
    weights_b = torch.sin(t * omega) / omega.sin()
    return weights_a[:, None] * a + weights_b[:, None] * b


def interpolate_features(features: TextFeatures, t: torch.Tensor) -> TextFeatures:
    """Two captions' features (2 rows) -> one row per t in [0, 1]: sentences and words lerped
    (padding zeroed), the word mask the union of both, except at t = 0 and 1, which are
    exactly the first and the second caption."""
    first, second = features.select([0]), features.select([1])
    words = [f.words[0] * f.mask[0, :, None] for f in (first, second)]  # (T, D) each
    union = first.mask[0] | second.mask[0]
    masks = [first.mask[0] if x == 0 else second.mask[0] if x == 1 else union for x in t.tolist()]
    tokens = [first.tokens[0] if x < 0.5 else second.tokens[0] for x in t.tolist()]
    return TextFeatures(
        lerp(words[0], words[1], t.to(words[0].device)),
        torch.stack(masks),
        lerp(first.sentence[0], second.sentence[0], t.to(words[0].device)),
        tokens,
    )
