"""The training configuration: one frozen dataclass, saved in every run directory."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from models.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    Preset,
    TextEncoderConfig,
    get_preset,
)
from training import experiments

LOSS_NAMES = ("sent", "word", "img")


@dataclass(frozen=True)
class TrainConfig:
    # a models/ preset: coco-256, coco-128, shapes-64, shapes-32, shapes-32-cpu, tiny
    preset: str = "shapes-64"
    data: str = ""  # a COCO-captions-layout root (COCO itself or `xmc-shapes make`)
    train_split: str = "train"  # annotations/captions_{split}.json + {split}/ images
    sample_split: str = "val"  # where the fixed sample-grid captions come from ("" = train)
    steps: int = 20_000  # generator updates (skipped non-finite steps do not count)
    batch_size: int = 32  # images per step per process, split into d_steps sub-batches
    # images per D update over all processes (the official recipe's batch, 56 in the paper);
    # when set, each process takes global_batch * d_steps / world_size images per step and
    # batch_size is not used (0 = batch_size decides)
    global_batch: int = 0
    d_steps: int = 2  # D updates per G update (official d_step_per_g_step)
    lr_g: float = 1e-4  # Adam learning rate of G (official 1e-4)
    lr_d: float = 4e-4  # Adam learning rate of D (official 4e-4, TTUR)
    beta1: float = 0.5  # Adam beta1 of both optimisers (official 0.5)
    beta2: float = 0.999  # Adam beta2 of both optimisers (official 0.999)
    ema_decay: float = 0.999  # EMA of G's parameters; BN buffers are copied from the live G
    losses: tuple[str, ...] = LOSS_NAMES  # any subset of sent, word, img
    w_sent: float = 1.0  # weight of L_sent (sentence <-> image) in L_D and L_G
    w_word: float = 1.0  # weight of L_word (words <-> 16x16 regions) in L_D and L_G
    w_img: float = 1.0  # weight of L_img (fake <-> real image) in L_G
    adversarial: str = "hinge"  # hinge | dual-contrastive
    infomax: bool = False  # InfoMax-GAN local-global loss (beta on real in D, alpha on fake in G)
    infomax_beta: float = 0.2  # InfoMax weight on real images in L_D (mimicry 0.2)
    infomax_alpha: float = 0.2  # InfoMax weight on fake images in L_G (mimicry 0.2)
    gather_negatives: bool = False  # contrastive negatives from all devices (default: per device)
    # --- the project's own experiments, not in the paper: read in training/experiments/ alone
    # one hard negative per caption in L_sent and L_word: its relation reversed or two colours
    # exchanged (training/experiments/negatives.py)
    swap_negatives: bool = False
    # weight of L_swap, that ranking once more with the edited caption as the only candidate
    # (0 = off; needs swap_negatives)
    w_swap: float = 0.0
    # weight of L_mismatch in L_D: each real image with its edited caption scored as fake by D's
    # hinge (the matching-aware D of GAN-INT-CLS; 0 = off; needs swap_negatives)
    w_mismatch: float = 0.0
    # coordinate channels in D (DiscriminatorConfig.coords, CoordConv)
    d_coords: bool = False
    # D's V e_s as an MLP of e_s (DiscriminatorConfig.sentence_head)
    d_sentence_head: bool = False
    # --- end of the experiments
    # G's readings of the caption not in the paper (GeneratorConfig.caption_paths): any of
    # sentence-head, token-layer, word-coords, coarse-attention; each starts as the identity,
    # so init_generator can be a model trained without them
    caption_paths: tuple[str, ...] = ()
    gf_dim: int = 0  # override the preset's G base width (0 = keep)
    df_dim: int = 0  # override the preset's D base width (0 = keep)
    text_encoder: str = ""  # override the preset's BERT (name or local path)
    image_encoder: str = ""  # local transformers ResNet dir, for the pretrained-CNN L_img
    # L_img on the pretrained CNN's features too (official pretrained_image_contrastive, on in
    # its COCO config); needs image_encoder, weighted by w_img, independent of `losses`
    pretrained_image_contrastive: bool = True
    pooling: str = ""  # sentence pooling: mean | cls | official ("" = the preset's)
    # InfoMax local features: penultimate (raw output of the block before the last, as
    # mimicry) | region (the 16x16 region map after a ReLU)
    infomax_local: str = "penultimate"
    tau: float = 0.1  # temperature of L_sent and L_img (paper's tau)
    rho1: float = 5.0  # word -> region attention sharpness
    rho2: float = 5.0  # log-sum-exp aggregation over words
    rho3: float = 50.0  # scale of the word-region logits
    center_crop: bool = False  # crop the centre square before resizing (default: squeeze whole)
    random_flip: bool = True  # mirror half the images (left/right swapped in their captions)
    seed: int = 0  # initialisation, data order, captions drawn, flips and noise
    num_workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    log_every: int = 20  # steps between stats.jsonl / TensorBoard records
    sample_every: int = 500  # steps between sample grids in samples/
    checkpoint_every: int = 200  # steps between checkpoints (also saved at the end and on stop)
    amp: str = "auto"  # auto (bf16 on GPU) | bf16 | off
    channels_last: str = "auto"  # auto (on GPU) | on | off
    compile: bool = False  # torch.compile G and D
    keep_checkpoints: int = 3  # newest checkpoints kept: a damaged newest falls back to the next
    max_bad_steps: int = 5  # non-finite steps in a row (each skipped) before the run stops
    strict_data: bool = False  # undecodable images and empty captions are fatal, not skipped
    # the frozen text encoder's features, computed once per distinct caption: "memory" (kept
    # in RAM), a directory (memory-mapped on disk, built there from the training captions on
    # first use, refused when another encoder built it) or "off" (encode every batch)
    text_cache: str = "memory"
    # an exported model (directory or Hub repo id) whose generator weights G and its EMA start
    # from, with a fresh D and fresh optimisers; only read when the run has no checkpoint yet
    init_generator: str = ""
    # a saved D to start from (a run's checkpoint file, or a directory written by
    # Discriminator.save_pretrained) with a fresh optimiser; only read when the run has no
    # checkpoint yet, its config must equal this run's D
    init_discriminator: str = ""

    def __post_init__(self) -> None:
        get_preset(self.preset)
        if not self.text_cache:
            raise ValueError("text_cache is 'memory', 'off' or a directory, got ''")
        bad = [name for name in self.losses if name not in LOSS_NAMES]
        if bad:
            raise ValueError(f"unknown losses {bad}; choose a subset of {', '.join(LOSS_NAMES)}")
        experiments.check(self)  # the switches of training/experiments
        if self.adversarial not in ("hinge", "dual-contrastive"):
            raise ValueError("adversarial must be 'hinge' or 'dual-contrastive'")
        for name in (
            "steps",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "d_steps",
            "keep_checkpoints",
            "max_bad_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.batch_size % self.d_steps or self.batch_size // self.d_steps < 2:
            raise ValueError(
                f"batch_size ({self.batch_size}) must split into d_steps "
                f"({self.d_steps}) sub-batches of at least 2 (contrastive losses)"
            )
        if self.global_batch and self.global_batch < 2:
            raise ValueError(f"global_batch must be 0 or >= 2, got {self.global_batch}")
        if self.pooling not in ("", "mean", "cls", "official"):
            raise ValueError(f"pooling must be mean, cls or official, got {self.pooling!r}")
        if self.amp not in ("auto", "bf16", "off") or self.channels_last not in (
            "auto",
            "on",
            "off",
        ):
            raise ValueError("amp is auto|bf16|off and channels_last is auto|on|off")

    def process_batch(self, world_size: int) -> int:
        """Images per step for one of `world_size` processes (global_batch, else batch_size)."""
        if not self.global_batch:
            return self.batch_size
        total = self.global_batch * self.d_steps
        if total % world_size or (total // world_size) % self.d_steps:
            raise ValueError(
                f"global_batch {self.global_batch} x d_steps {self.d_steps} does not split "
                f"evenly over {world_size} processes"
            )
        return total // world_size

    def model_configs(self) -> Preset:
        """The preset with this run's overrides applied."""
        preset = get_preset(self.preset)
        text = preset.text_encoder
        if self.pooling:
            text = dataclasses.replace(text, pooling=self.pooling)
        if self.text_encoder:
            hidden = _hidden_size(self.text_encoder)
            text = dataclasses.replace(text, name_or_path=self.text_encoder, hidden_size=hidden)
        g = dataclasses.replace(
            preset.generator,
            word_dim=text.hidden_size,
            sentence_dim=text.hidden_size,
            gf_dim=self.gf_dim or preset.generator.gf_dim,
            caption_paths=self.caption_paths,
        )
        d = dataclasses.replace(
            preset.discriminator,
            word_dim=text.hidden_size,
            sentence_dim=text.hidden_size,
            infomax=self.infomax,
            infomax_local=self.infomax_local,
            df_dim=self.df_dim or preset.discriminator.df_dim,
        )
        d = experiments.discriminator_config(self, d)
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
    """Everything a run directory (config.json) and every checkpoint record about the run's
    configuration, in JSON types (tuples as lists): enough to rebuild any of its networks."""
    models = config.model_configs()
    described = {
        "train": dataclasses.asdict(config),
        "generator": dataclasses.asdict(models.generator),
        "discriminator": dataclasses.asdict(models.discriminator),
        "text_encoder": dataclasses.asdict(models.text_encoder),
    }
    return json.loads(json.dumps(described))


__all__ = [
    "LOSS_NAMES",
    "DiscriminatorConfig",
    "GeneratorConfig",
    "TextEncoderConfig",
    "TrainConfig",
    "describe",
]
