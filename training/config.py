"""The training configuration: one frozen dataclass, saved in every run directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    Preset,
    TextEncoderConfig,
    get_preset,
)

LOSS_NAMES = ("sent", "word", "img")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "shapes-64"  # a models/ preset: coco-256, coco-128, shapes-64, shapes-32, tiny
    data: str = ""  # a COCO-captions-layout root (COCO itself or `xmc-shapes make`)
    train_split: str = "train"  # annotations/captions_{split}.json + {split}/ images
    sample_split: str = "val"  # where the fixed sample-grid captions come from ("" = train)
    steps: int = 20_000  # generator updates
    batch_size: int = 32  # images per step per process, split into d_steps sub-batches
    d_steps: int = 2  # D updates per G update (official d_step_per_g_step)
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999  # EMA of G's parameters; BN buffers are copied from the live G
    losses: tuple[str, ...] = LOSS_NAMES  # any subset of sent, word, img
    w_sent: float = 1.0
    w_word: float = 1.0
    w_img: float = 1.0
    adversarial: str = "hinge"  # hinge | dual-contrastive
    infomax: bool = False  # InfoMax-GAN local-global loss (beta on real in D, alpha on fake in G)
    infomax_beta: float = 0.2
    infomax_alpha: float = 0.2
    gather_negatives: bool = False  # contrastive negatives from all devices (default: per device)
    gf_dim: int = 0  # override the preset's widths (0 = keep)
    df_dim: int = 0
    text_encoder: str = ""  # override the preset's BERT (name or local path)
    image_encoder: str = ""  # local transformers ResNet dir: adds L_img on its logits
    center_crop: bool = False
    random_flip: bool = True
    seed: int = 0
    num_workers: int = 2
    log_every: int = 20  # steps
    sample_every: int = 500  # steps
    checkpoint_every: int = 200  # steps
    amp: str = "auto"  # auto (bf16 on GPU) | bf16 | off
    channels_last: str = "auto"  # auto (on GPU) | on | off
    compile: bool = False  # torch.compile G and D

    def __post_init__(self) -> None:
        get_preset(self.preset)
        bad = [name for name in self.losses if name not in LOSS_NAMES]
        if bad:
            raise ValueError(f"unknown losses {bad}; choose a subset of {', '.join(LOSS_NAMES)}")
        if self.adversarial not in ("hinge", "dual-contrastive"):
            raise ValueError("adversarial must be 'hinge' or 'dual-contrastive'")
        for name in ("steps", "log_every", "sample_every", "checkpoint_every", "d_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.batch_size % self.d_steps or self.batch_size // self.d_steps < 2:
            raise ValueError(
                f"batch_size ({self.batch_size}) must split into d_steps "
                f"({self.d_steps}) sub-batches of at least 2 (contrastive losses)"
            )
        if self.amp not in ("auto", "bf16", "off") or self.channels_last not in (
            "auto",
            "on",
            "off",
        ):
            raise ValueError("amp is auto|bf16|off and channels_last is auto|on|off")

    def model_configs(self) -> Preset:
        """The preset with this run's overrides applied."""
        preset = get_preset(self.preset)
        text = preset.text_encoder
        if self.text_encoder:
            hidden = _hidden_size(self.text_encoder)
            text = dataclasses.replace(text, name_or_path=self.text_encoder, hidden_size=hidden)
        g = dataclasses.replace(
            preset.generator,
            word_dim=text.hidden_size,
            sentence_dim=text.hidden_size,
            gf_dim=self.gf_dim or preset.generator.gf_dim,
        )
        d = dataclasses.replace(
            preset.discriminator,
            word_dim=text.hidden_size,
            sentence_dim=text.hidden_size,
            infomax=self.infomax,
            df_dim=self.df_dim or preset.discriminator.df_dim,
        )
        return Preset(generator=g, discriminator=d, text_encoder=text)


def _hidden_size(name_or_path: str) -> int:
    """The BERT hidden size, read from its config (local dir or hub cache) without weights."""
    from transformers import AutoConfig

    from models.text_encoder import TextEncoderLoadError, resolve_bert_path

    try:
        return AutoConfig.from_pretrained(resolve_bert_path(name_or_path)).hidden_size
    except (OSError, ValueError):
        raise TextEncoderLoadError(
            f"could not read the config of text encoder {name_or_path!r}: pass a local "
            "directory holding a BertModel (config.json, weights, vocab)"
        ) from None


def describe(config: TrainConfig) -> dict:
    """Everything a run directory records about its configuration."""
    models = config.model_configs()
    return {
        "train": dataclasses.asdict(config),
        "generator": dataclasses.asdict(models.generator),
        "discriminator": dataclasses.asdict(models.discriminator),
        "text_encoder": dataclasses.asdict(models.text_encoder),
    }


__all__ = [
    "LOSS_NAMES",
    "DiscriminatorConfig",
    "GeneratorConfig",
    "TextEncoderConfig",
    "TrainConfig",
    "describe",
]
