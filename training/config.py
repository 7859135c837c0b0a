"""The training configuration: a preset and five frozen sections, saved in every run directory.

    TrainConfig
      preset        a models/ preset: its network configs are the run's
      data          what is read and how (DataConfig)
      optim         steps, batch, Adam, EMA (OptimConfig)
      objective     the paper's losses, weights, temperatures; InfoMax's weights (ObjectiveConfig)
      run           seed, logging, checkpoints, workers, precision, starting weights (RunConfig)
      experiments   the project's own switches, not in the paper (training/experiments)
      generator, discriminator, text_encoder
                    fields of the preset's network configs this run changes, e.g. {"gf_dim": 8}
                    (`--set generator.gf_dim=8`): architecture is set there and nowhere else

`training/config_io.py` reads and writes it as JSON (upgrading the flat configs of older runs)
and parses `--set section.field=value`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from models.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    Preset,
    TextEncoderConfig,
    config_from_dict,
    get_preset,
)
from training.experiments import SETS as EXPERIMENT_FIELDS
from training.experiments import ExperimentsConfig, network_configs

LOSS_NAMES = ("sent", "word", "img")
NETWORKS = {
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "text_encoder": TextEncoderConfig,
}
# network fields a run cannot set, and where each comes from instead
_WIDTH = "the text encoder's hidden size"
DERIVED = {
    "generator.word_dim": _WIDTH,
    "generator.sentence_dim": _WIDTH,
    "discriminator.word_dim": _WIDTH,
    "discriminator.sentence_dim": _WIDTH,
    "text_encoder.hidden_size": "the config of text_encoder.name_or_path",
    **EXPERIMENT_FIELDS,
}


@dataclass(frozen=True)
class DataConfig:
    source: str = ""  # --data: a COCO-captions root, image+txt folder, .jsonl or .tar shards
    train_split: str = "train"  # annotations/captions_{split}.json + {split}/ images
    sample_split: str = "val"  # where the fixed sample-grid captions come from ("" = train)
    center_crop: bool = False  # crop the centre square before resizing (default: squeeze whole)
    random_flip: bool = True  # mirror half the images (left/right swapped in their captions)
    strict_data: bool = False  # undecodable images and empty captions are fatal, not skipped
    # the frozen text encoder's features, computed once per distinct caption: "memory" (kept
    # in RAM), a directory (memory-mapped on disk, built there from the training captions on
    # first use, refused when another encoder built it) or "off" (encode every batch)
    text_cache: str = "memory"

    def __post_init__(self) -> None:
        if not self.text_cache:
            raise ValueError("data.text_cache is 'memory', 'off' or a directory, got ''")


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 20_000  # generator updates (skipped non-finite steps do not count)
    batch_size: int = 32  # images per step per process, split into d_steps sub-batches
    # images per D update over all processes (the official recipe's batch, 56 in the paper);
    # when set it decides the batch: each process takes global_batch * d_steps / world_size
    # images per step, and batch_size must be left at its default (0 = batch_size decides)
    global_batch: int = 0
    d_steps: int = 2  # D updates per G update (official d_step_per_g_step)
    lr_g: float = 1e-4  # Adam learning rate of G (official 1e-4)
    lr_d: float = 4e-4  # Adam learning rate of D (official 4e-4, TTUR)
    beta1: float = 0.5  # Adam beta1 of both optimisers (official 0.5)
    beta2: float = 0.999  # Adam beta2 of both optimisers (official 0.999)
    ema_decay: float = 0.999  # EMA of G's parameters; BN buffers are copied from the live G

    def __post_init__(self) -> None:
        _at_least_one(self, "optim", ("steps", "d_steps"))
        if self.global_batch == 0 and (
            self.batch_size % self.d_steps or self.batch_size // self.d_steps < 2
        ):
            raise ValueError(
                f"optim.batch_size ({self.batch_size}) must split into optim.d_steps "
                f"({self.d_steps}) sub-batches of at least 2 (contrastive losses)"
            )
        if self.global_batch and self.global_batch < 2:
            raise ValueError(f"optim.global_batch must be 0 or >= 2, got {self.global_batch}")
        if self.global_batch and self.batch_size != OptimConfig.batch_size:
            raise ValueError(
                f"optim.global_batch ({self.global_batch}) and optim.batch_size "
                f"({self.batch_size}) are both set: global_batch decides the batch when it is "
                "not 0; drop one of them (optim.global_batch=0 lets batch_size decide)"
            )

    def process_batch(self, world_size: int) -> int:
        """Images per step for one of `world_size` processes (global_batch, else batch_size)."""
        if not self.global_batch:
            return self.batch_size
        total = self.global_batch * self.d_steps
        if total % world_size or (total // world_size) % self.d_steps:
            raise ValueError(
                f"optim.global_batch {self.global_batch} x d_steps {self.d_steps} does not "
                f"split evenly over {world_size} processes"
            )
        return total // world_size


@dataclass(frozen=True)
class ObjectiveConfig:
    losses: tuple[str, ...] = LOSS_NAMES  # any subset of sent, word, img
    w_sent: float = 1.0  # weight of L_sent (sentence <-> image) in L_D and L_G
    w_word: float = 1.0  # weight of L_word (words <-> 16x16 regions) in L_D and L_G
    w_img: float = 1.0  # weight of L_img (fake <-> real image) in L_G
    tau: float = 0.1  # temperature of L_sent and L_img (paper's tau)
    rho1: float = 5.0  # word -> region attention sharpness
    rho2: float = 5.0  # log-sum-exp aggregation over words
    rho3: float = 50.0  # scale of the word-region logits
    adversarial: str = "hinge"  # hinge | dual-contrastive
    # InfoMax-GAN's local-global loss, on when D has its heads (discriminator.infomax=true)
    infomax_beta: float = 0.2  # its weight on real images in L_D (mimicry 0.2)
    infomax_alpha: float = 0.2  # its weight on fake images in L_G (mimicry 0.2)
    gather_negatives: bool = False  # contrastive negatives from all devices (default: per device)
    image_encoder: str = ""  # local transformers ResNet dir, for the pretrained-CNN L_img
    # L_img on the pretrained CNN's features too (official pretrained_image_contrastive, on in
    # its COCO config); needs image_encoder, weighted by w_img, independent of `losses`
    pretrained_image_contrastive: bool = True

    def __post_init__(self) -> None:
        bad = [name for name in self.losses if name not in LOSS_NAMES]
        if bad:
            raise ValueError(
                f"unknown losses {bad} in objective.losses; choose a subset of "
                f"{', '.join(LOSS_NAMES)}"
            )
        if self.adversarial not in ("hinge", "dual-contrastive"):
            raise ValueError("objective.adversarial must be 'hinge' or 'dual-contrastive'")


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0  # initialisation, data order, captions drawn, flips and noise
    num_workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    log_every: int = 20  # steps between stats.jsonl / TensorBoard records
    sample_every: int = 500  # steps between sample grids in samples/
    checkpoint_every: int = 200  # steps between checkpoints (also saved at the end and on stop)
    keep_checkpoints: int = 3  # newest checkpoints kept: a damaged newest falls back to the next
    max_bad_steps: int = 5  # non-finite steps in a row (each skipped) before the run stops
    amp: str = "auto"  # auto (bf16 on GPU) | bf16 | off
    channels_last: str = "auto"  # auto (on GPU) | on | off
    compile: bool = False  # torch.compile G and D
    # an exported model (directory or Hub repo id) whose generator weights G and its EMA start
    # from, with a fresh D and fresh optimisers; only read when the run has no checkpoint yet
    init_generator: str = ""
    # a saved D to start from (a run's checkpoint file, or a directory written by
    # Discriminator.save_pretrained) with a fresh optimiser; only read when the run has no
    # checkpoint yet, its config must equal this run's D
    init_discriminator: str = ""

    def __post_init__(self) -> None:
        names = ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints")
        _at_least_one(self, "run", (*names, "max_bad_steps"))
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"run.amp is auto, bf16 or off, got {self.amp!r}")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"run.channels_last is auto, on or off, got {self.channels_last!r}")


SECTIONS = {
    "data": DataConfig,
    "optim": OptimConfig,
    "objective": ObjectiveConfig,
    "run": RunConfig,
    "experiments": ExperimentsConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    # a models/ preset: coco-256, coco-128, shapes-64, shapes-32, shapes-32-cpu, tiny
    preset: str = "shapes-64"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    run: RunConfig = field(default_factory=RunConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)
    # fields of the preset's GeneratorConfig / DiscriminatorConfig / TextEncoderConfig this run
    # changes (JSON values); a new text_encoder.name_or_path brings its own hidden size
    generator: dict[str, Any] = field(default_factory=dict)
    discriminator: dict[str, Any] = field(default_factory=dict)
    text_encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        preset = get_preset(self.preset)
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"TrainConfig.{name} must be a {kind.__name__}")
        for network in NETWORKS:
            changed = getattr(self, network)
            for key in changed:
                where = DERIVED.get(f"{network}.{key}")
                if where:
                    raise ValueError(f"{network}.{key} is not set directly: it follows {where}")
            _network(network, getattr(preset, network), changed)  # valid values and keys
        g = _network("generator", preset.generator, self.generator)
        d = _network("discriminator", preset.discriminator, self.discriminator)
        if (g.resolution, g.channel_multipliers) != (d.resolution, d.channel_multipliers):
            raise ValueError(
                f"generator and discriminator must share resolution and channel_multipliers, "
                f"got {g.resolution} {g.channel_multipliers} and {d.resolution} "
                f"{d.channel_multipliers}: set both"
            )

    def model_configs(self) -> Preset:
        """The preset's network configs with this run's changes and experiments applied."""
        preset = get_preset(self.preset)
        text = _network("text_encoder", preset.text_encoder, self.text_encoder)
        if "name_or_path" in self.text_encoder:  # another BERT: its own width
            text = dataclasses.replace(text, hidden_size=_hidden_size(text.name_or_path))
        dims = {"word_dim": text.hidden_size, "sentence_dim": text.hidden_size}
        g = _network("generator", preset.generator, {**self.generator, **dims})
        d = _network("discriminator", preset.discriminator, {**self.discriminator, **dims})
        g, d = network_configs(self.experiments, g, d)
        return Preset(generator=g, discriminator=d, text_encoder=text)


def _at_least_one(section: Any, owner: str, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(section, name) < 1:
            raise ValueError(f"{owner}.{name} must be >= 1, got {getattr(section, name)}")


def _network(name: str, base: Any, changed: dict[str, Any]) -> Any:
    """`base` (a network config) with the fields in `changed`, typed and validated as a
    config.json's; an unknown field is named with the valid ones."""
    if not isinstance(changed, dict):
        raise TypeError(f"TrainConfig.{name} must be a dict of {type(base).__name__} fields")
    names = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(changed) - set(names))
    if unknown:
        raise ValueError(f"{name} has no field {unknown[0]}; valid: {', '.join(names)}")
    try:
        return config_from_dict(type(base), {**dataclasses.asdict(base), **changed})
    except ValueError as error:  # say which of the run's networks it is
        raise ValueError(f"{name}: {error}") from None


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


def describe(config: TrainConfig) -> dict[str, Any]:
    """Everything a run directory (config.json) and every checkpoint record about the run's
    configuration, in JSON types (tuples as lists): the sections as set, and the resolved
    network configs, enough to rebuild any of its networks."""
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
    "DataConfig",
    "DiscriminatorConfig",
    "ExperimentsConfig",
    "GeneratorConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RunConfig",
    "TextEncoderConfig",
    "TrainConfig",
    "describe",
]
