"""Building blocks shared by the generator and the discriminator (official `nets/common.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def l2_normalize(x: torch.Tensor, dim: int = -1, epsilon: float = 1e-12) -> torch.Tensor:
    """x * rsqrt(max(sum(x^2), epsilon)) along `dim`; an all-zero vector stays zero (no NaN)."""
    square_sum = x.square().sum(dim=dim, keepdim=True)
    return x * torch.rsqrt(square_sum.clamp_min(epsilon))


def init_glorot(module: nn.Module) -> None:
    """Glorot-normal kernels and zero biases, the official initialisation."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def sn_conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
    init_glorot(conv)
    return spectral_norm(conv, eps=1e-10)


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    linear = nn.Linear(in_features, out_features, bias=bias)
    init_glorot(linear)
    return spectral_norm(linear, eps=1e-10)


class ProjectionHead(nn.Module):
    """SN MLP with a linear shortcut (1x1 convs for local features): InfoMax-GAN's projection
    heads, and D's sentence head (`models/discriminator_variants.py`)."""

    def __init__(self, in_dim: int, out_dim: int, local: bool) -> None:
        super().__init__()
        make = (lambda i, o: sn_conv(i, o, 1)) if local else sn_linear
        self.hidden = make(in_dim, in_dim)
        self.out = make(in_dim, out_dim)
        self.shortcut = make(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(x))) + self.shortcut(x)


def with_coordinates(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C + 2, H, W): x then y of each pixel centre, -1 (left, top) to 1."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W)
    return torch.cat([x, grid.expand(b, 2, h, w)], dim=1)


def word_attention(
    regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, rho0: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attend from every region to the words (official `attention_for_g`).

    regions (B, N, D), words (B, T, D), word_mask (B, T) bool (True = valid).
    Returns context (B, N, D), a mix of L2-normalised words, and attention (B, N, T).
    """
    regions, words = l2_normalize(regions.float()), l2_normalize(words.float())
    logits = rho0 * regions @ words.transpose(1, 2)  # (B, N, T), rho0 * cosine
    logits = logits.masked_fill(~word_mask[:, None, :], float("-inf"))
    attention = logits.softmax(dim=-1)
    return attention @ words, attention


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


class ConditionalBatchNorm(nn.Module):
    """BN without affine, then x_hat * (1 + gamma(g)) + beta(g) from a global condition."""

    def __init__(self, channels: int, cond_dim: int, momentum: float, eps: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False, momentum=momentum, eps=eps)
        self.gamma = nn.Linear(cond_dim, channels)
        self.beta = nn.Linear(cond_dim, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x (B, C, H, W), cond (B, cond_dim)
        gamma = self.gamma(cond)[:, :, None, None]
        beta = self.beta(cond)[:, :, None, None]
        return self.norm(x) * (1.0 + gamma) + beta


class LocalConditionalBatchNorm(nn.Module):
    """BN without affine, then per-pixel gamma/beta from a spatial condition by 1x1 convs.

    The condition may be coarser than x by an integer factor: it stands for its nearest-neighbour
    upsampling (as in the official code), and since a 1x1 conv commutes with nearest upsampling,
    gamma and beta are computed at the coarse size and upsampled, never the wide condition.
    """

    def __init__(self, channels: int, cond_channels: int, momentum: float, eps: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False, momentum=momentum, eps=eps)
        self.gamma = nn.Conv2d(cond_channels, channels, 1)
        self.beta = nn.Conv2d(cond_channels, channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x (B, C, H, W), cond (B, cond_channels, H / k, W / k) for an integer k >= 1
        gamma, beta = self.gamma(cond), self.beta(cond)
        if cond.shape[-2:] != x.shape[-2:]:
            gamma = F.interpolate(gamma, size=x.shape[-2:], mode="nearest")
            beta = F.interpolate(beta, size=x.shape[-2:], mode="nearest")
        return self.norm(x) * (1.0 + gamma) + beta


class GenBlock(nn.Module):
    """Up-sampling residual block; `norm` is global (GenBlock) or local (GenSpatialBlock)."""

    def __init__(
        self, in_ch: int, out_ch: int, cond: int, local: bool, momentum: float, eps: float
    ) -> None:
        super().__init__()
        norm = LocalConditionalBatchNorm if local else ConditionalBatchNorm
        self.norm1 = norm(in_ch, cond, momentum, eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = norm(out_ch, cond, momentum, eps)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x (B, in, H, W) -> (B, out, 2H, 2W); cond (B, D) for a global block, or a spatial
        # (B, D, h, w) map for a local one, upsampled to H and then 2H inside the norms
        h = self.conv1(upsample(F.relu(self.norm1(x, cond))))
        h = self.conv2(F.relu(self.norm2(h, cond)))
        return h + self.shortcut(upsample(x))


class DiscOptimizedBlock(nn.Module):
    """First D block: conv-relu-conv then average pooling, shortcut pool-then-1x1 (no pre-ReLU)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = sn_conv(in_ch, out_ch, 3)
        self.conv2 = sn_conv(out_ch, out_ch, 3)
        self.shortcut = sn_conv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = downsample(self.conv2(F.relu(self.conv1(x))))
        return h + self.shortcut(downsample(x))


class DiscBlock(nn.Module):
    """Pre-activation residual D block; 1x1 shortcut when downsampling or widening."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = sn_conv(in_ch, out_ch, 3)
        self.conv2 = sn_conv(out_ch, out_ch, 3)
        self.downsample = downsample
        needs_projection = downsample or in_ch != out_ch
        self.shortcut = sn_conv(in_ch, out_ch, 1) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, skip = downsample(h), downsample(skip)
        return h + skip
