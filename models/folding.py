"""The inference generator's conditional batch norms folded into one affine map each.

In eval mode a (Local)ConditionalBatchNorm is a fixed BN followed by a conditional scale and
shift; both are linear in the condition, so one layer computes them together. The pipeline runs
such a folded copy (measured 1.26x the plain generator at batch 32 on the CPU, docs/service.md)
and keeps the trained module for saving and inspection.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from models.generator import Generator

__all__ = ["FoldedConditionalNorm", "fold_norms"]


class FoldedConditionalNorm(torch.nn.Module):
    """An eval-mode (Local)ConditionalBatchNorm folded into one conditional affine map.

    BN in eval mode is x * a + b per channel (a = 1 / sqrt(var + eps), b = -mean * a), so
    (x * a + b) * (1 + gamma(c)) + beta(c) = x * scale(c) + shift(c) with
    scale = a + a * gamma(c) and shift = b + b * gamma(c) + beta(c): both linear in c. One layer
    gives both (2C outputs), and a coarse spatial condition is broadcast over each k x k block of
    x instead of being upsampled. Equal to the unfolded norm up to float rounding.
    """

    weight: torch.Tensor  # (2C, D) buffers: scale rows then shift rows
    bias: torch.Tensor  # (2C,)

    def __init__(self, norm: Any) -> None:  # a (Local)ConditionalBatchNorm
        super().__init__()
        bn = norm.norm
        a = torch.rsqrt(bn.running_var + bn.eps)  # (C,)
        b = -bn.running_mean * a
        gamma, beta = norm.gamma, norm.beta
        self.spatial = isinstance(gamma, torch.nn.Conv2d)
        w_gamma, w_beta = (layer.weight.flatten(1) for layer in (gamma, beta))  # (C, D)
        weight = torch.cat([a[:, None] * w_gamma, b[:, None] * w_gamma + w_beta])  # (2C, D)
        bias = torch.cat([a * (1 + gamma.bias), b * (1 + gamma.bias) + beta.bias])  # (2C,)
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if not self.spatial:  # cond (B, D) -> (B, 2C, 1, 1)
            scale, shift = F.linear(cond, self.weight, self.bias)[:, :, None, None].chunk(2, 1)
            return torch.addcmul(shift, x, scale)
        scale, shift = F.conv2d(cond, self.weight[:, :, None, None], self.bias).chunk(2, 1)
        h, w = cond.shape[-2:]  # x is an integer multiple k of the condition's size
        blocks = x.view(batch, channels, h, height // h, w, width // w)
        out = torch.addcmul(shift[:, :, :, None, :, None], blocks, scale[:, :, :, None, :, None])
        return out.view(batch, channels, height, width)


def fold_norms(generator: Generator) -> Generator:
    """An inference copy of `generator` with every conditional BN folded (see above)."""
    import copy

    from models.layers import ConditionalBatchNorm, LocalConditionalBatchNorm

    folded = copy.deepcopy(generator).eval()
    for module in list(folded.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (ConditionalBatchNorm, LocalConditionalBatchNorm)):
                setattr(module, name, FoldedConditionalNorm(child))
    return folded
