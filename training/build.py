"""What a trainer is made of, built from its configuration: the networks and their optimisers,
the text and image encoders, the dataset. A trainer can be handed its own encoder and dataset
instead (tests and benchmarks do)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.config import Preset
from models.discriminator import Discriminator
from models.generator import Generator
from training.config import TrainConfig
from training.distributed import DistInfo, broadcast_module
from training.faults import RunError


@dataclass
class Networks:
    generator: Generator
    discriminator: Discriminator
    ema: Generator  # the EMA of G's parameters (BN buffers copied): what is exported
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    g_forward: Callable[..., Any]  # G itself, or its torch.compile'd wrapper
    d_forward: Callable[..., Any]


def networks(
    c: TrainConfig, models: Preset, device: torch.device, channels_last: bool, info: DistInfo
) -> Networks:
    """G and D from the seed (rank 0's on every rank), the EMA, both Adams."""
    torch.manual_seed(c.run.seed)
    generator = Generator(models.generator).to(device)
    discriminator = Discriminator(models.discriminator).to(device)
    if channels_last:
        # torch's stubs for Module.to omit memory_format, which it takes (and documents)
        generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        discriminator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    broadcast_module(generator, info)
    broadcast_module(discriminator, info)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    betas = (c.optim.beta1, c.optim.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), c.optim.lr_g, betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), c.optim.lr_d, betas)
    g_forward: Callable[..., Any] = torch.compile(generator) if c.run.compile else generator
    d_forward: Callable[..., Any] = torch.compile(discriminator) if c.run.compile else discriminator
    return Networks(generator, discriminator, ema, opt_g, opt_d, g_forward, d_forward)


@torch.no_grad()
def update_ema(ema: Generator, generator: Generator, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * G for the parameters; the buffers (BN) copied."""
    for ema_p, p in zip(ema.parameters(), generator.parameters(), strict=True):
        ema_p.lerp_(p.detach(), 1.0 - decay)
    for ema_b, b in zip(ema.buffers(), generator.buffers(), strict=True):
        ema_b.copy_(b)


def initial_generator(generator: Generator, ema: Generator, source: str) -> None:
    """A fresh run's start from an exported model (TrainConfig.run.init_generator): its generator
    weights into G and the EMA, refusing one whose config differs from the run's."""
    from models.artifacts import CHECKSUM_KEY, WEIGHTS_NAME, ArtifactError, load_state, read_config
    from models.config import GeneratorConfig, config_from_dict
    from models.hub import resolve_model_dir

    try:
        directory = resolve_model_dir(source)
        data = read_config(directory)
        theirs = config_from_dict(GeneratorConfig, data.get("generator", {}))
        added = {p.replace("-", "_") for p in generator.config.caption_paths} - {
            p.replace("-", "_") for p in theirs.caption_paths
        }  # the modules of the paths this run adds (models/caption_paths.py)
        if dataclasses.replace(theirs, caption_paths=generator.config.caption_paths) != (
            generator.config
        ) or set(theirs.caption_paths) - set(generator.config.caption_paths):
            raise ArtifactError(
                f"its generator config {theirs} is not this run's {generator.config}"
            )
        source_generator = Generator(theirs)
        load_state(source_generator, directory / WEIGHTS_NAME, sha256=data.get(CHECKSUM_KEY))
        # caption paths this run adds keep their identity start; every other weight is theirs
        missing, unexpected = generator.load_state_dict(source_generator.state_dict(), strict=False)
        if unexpected or any(key.split(".")[0] not in added for key in missing):
            raise ArtifactError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
        ema.load_state_dict(generator.state_dict())
    except (ArtifactError, TypeError, ValueError) as error:
        raise RunError(f"run.init_generator={source}: {error}") from None


def initial_discriminator(discriminator: Discriminator, source: str) -> None:
    """A fresh run's D from a saved one (TrainConfig.run.init_discriminator): a training checkpoint
    file (its D) or a directory written by `Discriminator.save_pretrained`, whose config must
    equal this run's; D's optimiser starts fresh."""
    from pathlib import Path

    from models.artifacts import ArtifactError
    from models.config import DiscriminatorConfig, config_from_dict
    from training.checkpoint import CheckpointError, load_checkpoint

    try:
        if Path(source).is_file():
            state = load_checkpoint(source)
            theirs = config_from_dict(DiscriminatorConfig, state["config"]["discriminator"])
            weights = state["discriminator"]
        else:
            saved = Discriminator.from_pretrained(source)
            theirs, weights = saved.config, saved.state_dict()
        if theirs != discriminator.config:
            raise ArtifactError(
                f"its discriminator config {theirs} is not this run's {discriminator.config}"
            )
        discriminator.load_state_dict(weights)
    except (ArtifactError, CheckpointError, KeyError, OSError, TypeError, ValueError) as error:
        raise RunError(f"run.init_discriminator={source}: {error}") from None


def text_encoder(given: Any, models: Preset, device: torch.device) -> Any:
    """The run's frozen text encoder: `given` (checked against the run's config) or loaded."""
    wanted = models.text_encoder
    if given is None:
        from models.text_encoder import TextEncoder

        given = TextEncoder.from_config(wanted)
    elif getattr(given, "config", None) != wanted:
        raise RunError(
            f"the text encoder given has {getattr(given, 'config', None)}; this run needs {wanted}"
        )
    return given.to(device) if isinstance(given, nn.Module) else given


def cached_text_encoder(c: TrainConfig, encoder: Any, dataset: Any, progress: bool) -> Any:
    """The encoder behind a feature cache (TrainConfig.data.text_cache): it is frozen, so each
    distinct caption needs encoding once. A disk cache is built on first use from the
    captions of a map-style dataset."""
    from pathlib import Path

    from models.text_encoder import TextEncoder
    from training.text_cache import CachedTextEncoder, DiskTextCache, build_text_cache

    if c.data.text_cache == "off" or not isinstance(encoder, TextEncoder):
        return encoder  # an encoder object handed in (a cache itself, say) is used as it is
    if c.data.text_cache == "memory":
        return CachedTextEncoder(encoder)
    directory = Path(c.data.text_cache)
    if not (directory / "meta.json").is_file():
        records = getattr(dataset, "records", None)
        if records is None:
            raise RunError(
                f"data.text_cache={c.data.text_cache}: a disk cache is built from a map-style "
                "dataset's captions (COCO, folder, JSONL); use data.text_cache=memory for shards"
            )
        captions = (caption for record in records for caption in record.captions)
        build_text_cache(encoder, captions, directory, progress=progress)
    return DiskTextCache(directory, encoder)


def image_encoder(c: TrainConfig, device: torch.device) -> nn.Module | None:
    """The pretrained CNN of the extra L_img term, when asked for."""
    if not (c.objective.image_encoder and c.objective.pretrained_image_contrastive):
        return None
    from models.image_encoder import PretrainedImageEncoder

    return PretrainedImageEncoder.from_pretrained(c.objective.image_encoder).to(device)


def dataset(c: TrainConfig, resolution: int):
    """The training source named by --data: a COCO-captions root, a folder of images with
    same-name .txt captions, a JSONL manifest, or webdataset tar shards (docs/data.md)."""
    from training.data import open_source

    if not c.data.source:
        raise RunError(
            "no training data: pass --data (a COCO-captions root, an image+txt folder, a .jsonl "
            "manifest or .tar shards; `xmc-shapes make ROOT` writes the shapes benchmark)"
        )
    return open_source(
        c.data.source,
        resolution,
        split=c.data.train_split,
        center_crop=c.data.center_crop,
        random_flip=c.data.random_flip,
        seed=c.run.seed,
        skip_bad=not c.data.strict_data,
        pixels="uint8",  # made float on the device, after the transfer (stream.device_images)
    )
