"""The XMC-GAN discriminator (paper Sec. 4.2; official `nets/xmc_net.py`).

Spectral norm on every conv and linear, no normalisation layers. It doubles as the encoder of
the contrastive losses: phi(x) (sum-pooled last block) against V e_s for L_sent and against the
real image's phi for L_img, and the 16x16 region features against the words for L_word.
With `infomax`, InfoMax-GAN heads (Lee et al. 2021, as mimicry) project local features, by
default the raw output of the block before the last (mimicry's `local_feat_blocks`), and phi.
The project's own variants (coordinates, a sentence head; not in the paper) are built by
`models/discriminator_variants.py`, each the paper's choice when off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.artifacts import ArtifactMixin
from models.config import DiscriminatorConfig, get_preset
from models.discriminator_variants import coordinate_channels, located, sentence_mlp
from models.layers import DiscBlock, DiscOptimizedBlock, ProjectionHead, sn_conv, sn_linear


@dataclass
class DiscriminatorOutput:
    logits: torch.Tensor  # (B,) unconditional + projection logit
    features: torch.Tensor  # (B, F) phi(x)
    sentence: torch.Tensor  # (B, F) V e_s, shared by the projection and L_sent
    regions: torch.Tensor  # (B, N, D_w) 16x16 region features for L_word
    infomax_local: torch.Tensor | None = None  # (B, K, R): K = 16 (4x4) or 256 (16x16)
    infomax_global: torch.Tensor | None = None  # (B, R)


class Discriminator(nn.Module, ArtifactMixin):
    config_class = DiscriminatorConfig
    artifact_kind = "discriminator"

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = c = config
        extra = coordinate_channels(c)  # 0 in the paper's D
        self.stem = DiscOptimizedBlock(3 + extra, c.stem_channels)
        blocks, in_ch = [], c.stem_channels
        side = c.resolution // 2
        self.region_block = 0 if side == c.region_resolution else None  # 0 = the stem
        for i, (out_ch, down) in enumerate(c.block_channels):
            blocks.append(DiscBlock(in_ch, out_ch, down))
            side //= 2 if down else 1
            if side == c.region_resolution and self.region_block is None:
                self.region_block = i + 1
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        if self.region_block is None:
            raise ValueError(
                f"region_resolution {c.region_resolution} is not the side of any block of a "
                f"{c.resolution} px discriminator"
            )
        region_channels = (
            c.stem_channels
            if self.region_block == 0
            else c.block_channels[self.region_block - 1][0]
        )
        self.region_projection = sn_conv(region_channels + extra, c.word_dim, 1)
        self.linear = sn_linear(c.feature_dim, 1)
        head = sentence_mlp(c)  # None: the paper's V, an SN linear map
        if head is None:
            head = sn_linear(c.sentence_dim, c.feature_dim)
        self.sentence_projection = head
        if c.infomax:
            local_channels = region_channels if c.infomax_local == "region" else self._penultimate
            self.infomax_local = ProjectionHead(local_channels, c.infomax_dim, local=True)
            self.infomax_global = ProjectionHead(c.feature_dim, c.infomax_dim, local=False)

    @property
    def _penultimate(self) -> int:
        """Channels of the block before the last (the stem when there is one block)."""
        c = self.config
        return c.block_channels[-2][0] if len(c.block_channels) > 1 else c.stem_channels

    @classmethod
    def from_preset(
        cls, name: str, infomax: bool = False, infomax_local: str | None = None
    ) -> Discriminator:
        config = get_preset(name).discriminator
        if infomax:
            config = DiscriminatorConfig(**{**config.__dict__, "infomax": True})
        if infomax_local is not None:
            config = DiscriminatorConfig(**{**config.__dict__, "infomax_local": infomax_local})
        return cls(config)

    def forward(self, images: torch.Tensor, sentence: torch.Tensor) -> DiscriminatorOutput:
        """images (B, 3, R, R) in [0, 1]; sentence (b, D_s) with B a multiple of b (the real
        and fake halves of one batch share their captions, as in the official code)."""
        c = self.config
        if images.shape[1:] != (3, c.resolution, c.resolution):
            raise ValueError(
                f"expected images (B, 3, {c.resolution}, {c.resolution}), got {tuple(images.shape)}"
            )
        if (
            sentence.dim() != 2
            or sentence.shape[1] != c.sentence_dim
            or sentence.shape[0] == 0
            or images.shape[0] % sentence.shape[0]
        ):
            raise ValueError(
                f"expected sentence (b, {c.sentence_dim}) with the image batch "
                f"({images.shape[0]}) a multiple of b; got {tuple(sentence.shape)}"
            )
        x = self.stem(located(images, c))  # (B, 3 [+ 2], R, R)
        region_map = penultimate = x
        for i, block in enumerate(self.blocks, start=1):
            penultimate = x  # the input of the last block once the loop ends
            x = block(x)
            if i == self.region_block:
                region_map = x  # (B, C, 16, 16)
        features = F.relu(x).sum(dim=(2, 3))  # (B, F)
        projected = self.sentence_projection(sentence)  # (b, F)
        repeats = features.shape[0] // projected.shape[0]
        logits = self.linear(features).squeeze(1) + (features * projected.repeat(repeats, 1)).sum(1)
        region_input = located(region_map, c)  # (B, C [+ 2], 16, 16)
        regions = self.region_projection(region_input).flatten(2).transpose(1, 2)  # (B, 256, D_w)
        out = DiscriminatorOutput(logits, features, projected, regions)
        if c.infomax:
            # mimicry feeds the raw block output; "region" keeps the earlier ReLU'd 16x16 map
            local_map = F.relu(region_map) if c.infomax_local == "region" else penultimate
            local = self.infomax_local(local_map).flatten(2).transpose(1, 2)  # (B, K, R)
            out.infomax_local, out.infomax_global = local, self.infomax_global(features)
        return out
