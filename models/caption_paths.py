"""Caption paths for the generator that are not in the paper (GeneratorConfig.caption_paths).

The paper's G reads the caption in two places: g = [W e_s, z], a linear map of the sentence
vector giving one scale and shift per channel at every position of the global blocks (4 -> 16
px), and a word attention at 16x16 whose region queries carry no position. "A red circle above
a blue square" needs a reading that is non-linear (which colour goes with which shape, which way
round the relation is) and that depends on position. Each path below adds one such reading;
each starts as the identity (its last layer is zero), so a run can continue from a model
trained without it and the first step draws what that model drew.

- "sentence-head": h = MLP(e_s); W e_s + U h in g, and a 4x4 map V h added to the stem, so the
  caption can place things before the first block (the stem otherwise sees z alone).
- "token-layer": one trainable transformer layer over the frozen tokens; its change of each
  token feeds the word attention, and its masked mean the sentence vector.
- "word-coords": x and y coordinates projected into every word-attention query, so a region can
  prefer words by where it is.
- "coarse-attention": a second word attention at 8x8, where the layout forms, its context added
  to the 8x8 features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from models.config import CAPTION_PATHS
from models.layers import with_coordinates, word_attention

if TYPE_CHECKING:
    from models.generator import Generator

__all__ = [
    "CAPTION_PATHS",
    "CoarseAttention",
    "CoordinateQuery",
    "SentenceHead",
    "TokenLayer",
    "add_paths",
    "after_global_block",
    "locate_queries",
    "read_tokens",
    "reset_identity",
    "start",
]

# The generator meets the paths through the five functions below and nothing else: `add_paths`
# builds the modules a GeneratorConfig asks for (as attributes of G, so their weights keep the
# names `sentence_head.*`, `token_layer.*`, `word_coords.*`, `coarse_attention.*`), and each of
# the other four is the identity when its path is off, so with every path off G is the paper's.


def add_paths(generator: Generator, channels: list[int]) -> None:
    """Give `generator` the modules of its config's caption paths (None where off)."""
    c = generator.config
    paths = c.caption_paths
    generator.sentence_head = (
        SentenceHead(c.sentence_dim, c.z_dim, channels[0]) if "sentence-head" in paths else None
    )
    generator.token_layer = TokenLayer(c.word_dim) if "token-layer" in paths else None
    generator.word_coords = CoordinateQuery(c.word_dim) if "word-coords" in paths else None
    generator.coarse_attention = (
        CoarseAttention(channels[0], c.word_dim, c.rho0, "word-coords" in paths)
        if "coarse-attention" in paths
        else None
    )


def reset_identity(generator: Generator) -> None:
    """Zero each path's last layer (after G's own initialisation): each starts as the identity."""
    for name in ("sentence_head", "token_layer", "word_coords", "coarse_attention"):
        path = getattr(generator, name)
        if path is not None:
            path.reset_identity()


def read_tokens(
    generator: Generator, words: torch.Tensor, mask: torch.Tensor, sentence: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """token-layer: words (B, T, D_w) re-read, and their mean change added to e_s (B, D_s)."""
    if generator.token_layer is None:
        return words, sentence
    read = generator.token_layer(words, mask)  # (B, T, D_w)
    valid = mask[:, :, None].to(read.dtype)
    change = ((read - words) * valid).sum(1) / valid.sum(1)  # (B, D_w)
    return read, sentence + change


def start(
    generator: Generator, sentence: torch.Tensor, projected: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sentence-head: additions to W e_s (B, Z) and to the 4x4 stem (B, C, 4, 4)."""
    if generator.sentence_head is None:
        return projected, x
    to_global, to_stem = generator.sentence_head(sentence)
    return projected + to_global, x + to_stem


def after_global_block(
    generator: Generator, index: int, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """coarse-attention: after the first global block (8x8), its word context added to x."""
    if index != 0 or generator.coarse_attention is None:
        return x
    return generator.coarse_attention(x, words, mask)


def locate_queries(generator: Generator, queries: torch.Tensor) -> torch.Tensor:
    """word-coords: coordinates added to the 16x16 word-attention queries (B, D_w, 16, 16)."""
    if generator.word_coords is None:
        return queries
    return generator.word_coords(queries)


def _zero(*layers: nn.Linear | nn.Conv2d) -> None:
    for layer in layers:
        nn.init.zeros_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


class SentenceHead(nn.Module):
    """h = MLP(e_s) -> (an addition to W e_s (B, Z), an addition to the stem (B, C, 4, 4))."""

    def __init__(self, sentence_dim: int, z_dim: int, stem_channels: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Linear(sentence_dim, sentence_dim),
            nn.ReLU(),
            nn.Linear(sentence_dim, sentence_dim),
            nn.ReLU(),
        )
        self.to_global = nn.Linear(sentence_dim, z_dim)
        self.to_stem = nn.Linear(sentence_dim, stem_channels * 4 * 4)

    def reset_identity(self) -> None:
        _zero(self.to_global, self.to_stem)

    def forward(self, sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(sentence)  # (B, D_s)
        stem = self.to_stem(h).view(sentence.shape[0], -1, 4, 4)
        return self.to_global(h), stem


class TokenLayer(nn.Module):
    """One pre-norm transformer layer (self-attention over the valid tokens, then an MLP), both
    residual: words (B, T, D) -> words (B, T, D)."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            heads = 1
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, 2 * dim)
        self.ff2 = nn.Linear(2 * dim, dim)

    def reset_identity(self) -> None:
        _zero(self.out, self.ff2)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = words.shape
        q, k, v = self.qkv(self.norm1(words)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5  # (B, H, T, T)
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        mixed = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = words + self.out(mixed)
        return x + self.ff2(F.gelu(self.ff1(self.norm2(x))))


class CoordinateQuery(nn.Module):
    """Coordinates projected into word-attention queries: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(2, channels, 1, bias=False)

    def reset_identity(self) -> None:
        _zero(self.projection)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        coords = with_coordinates(queries[:, :0])  # (B, 2, H, W)
        return queries + self.projection(coords)


class CoarseAttention(nn.Module):
    """Word attention from the 8x8 features; the context is added back through a 1x1 conv."""

    def __init__(self, channels: int, word_dim: int, rho0: float, coords: bool) -> None:
        super().__init__()
        self.rho0 = rho0
        self.query = nn.Conv2d(channels, word_dim, 1)
        self.coords = CoordinateQuery(word_dim) if coords else None
        self.out = nn.Conv2d(word_dim, channels, 1)

    def reset_identity(self) -> None:
        _zero(self.out)
        if self.coords is not None:
            self.coords.reset_identity()

    def forward(self, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape  # (B, C, 8, 8)
        queries = self.query(x)
        if self.coords is not None:
            queries = self.coords(queries)
        context, _ = word_attention(queries.flatten(2).transpose(1, 2), words, mask, self.rho0)
        context = context.to(x.dtype).transpose(1, 2).reshape(b, -1, h, w)  # (B, D_w, 8, 8)
        return x + self.out(context)
