"""What a trainer trains and where it stands, as one typed object: the networks and their
optimisers, the progress counters, the data position and what a forward needs (text encoder,
device, autocast). The trainer owns a `TrainerState` and hands it to checkpointing
(`training.checkpoint`), logging (`training.logs`) and the sample grids (`training.samples`),
so a renamed field is a type error in each of them, not a silent `getattr` miss.

The RNG states are process-wide (torch, Python, CUDA): `training.checkpoint` reads and sets
them at save and resume, they are not held here. There is no gradient scaler: mixed precision
is bfloat16 autocast (`models.runtime.autocast_dtype`), which needs none.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from models.runtime import autocast

if TYPE_CHECKING:  # types only: checkpointing imports this module, and it stays light
    from models.text_encoder import TextFeatures
    from training.build import Networks
    from training.data.stream import DataStream
    from training.distributed import DistInfo

__all__ = ["Progress", "TextEncoding", "TrainerProgress", "TrainerState"]


class TextEncoding(Protocol):
    """What the trainer asks of a text encoder (the packaged one, a cached one, a test's)."""

    def encode(self, captions: list[str], device: torch.device | str | None = ...) -> TextFeatures:
        """(B,) captions -> words (B, T, D_w), mask (B, T), sentence (B, D_s)."""
        ...


@dataclass
class Progress:
    """Where a run stands; each field is a checkpoint key of the same name."""

    step: int = 0  # optimiser steps taken (a skipped step is not one)
    images_seen: int = 0  # over every process, the batches of skipped steps included
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    bad_in_row: int = 0  # skipped steps in a row up to now (max_bad_steps of them stop the run)
    bad_images: int = 0  # bad records the batches of this run passed over


@dataclass
class TrainerState:
    """Everything checkpointing, logging and sampling read or restore of a trainer."""

    networks: Networks  # G, D, the EMA of G, both Adams (and the forwards, maybe compiled)
    # the data position (epoch, image within it, items of each shard stream), this process's
    # batch and its place among the processes
    data: DataStream
    text_encoder: TextEncoding
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full precision
    progress: Progress = field(default_factory=Progress)

    @property
    def info(self) -> DistInfo:
        """This process's rank and the world size."""
        return self.data.info

    @property
    def batch_size(self) -> int:
        """Images per step on this process."""
        return self.data.batch

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward passes' precision context (bfloat16 autocast, or nothing)."""
        return autocast(self.device, self.autocast_dtype)

    @property
    def images_per_step(self) -> int:
        """Images of one step over every process."""
        return self.batch_size * self.info.world_size

    @property
    def bad_records(self) -> int:
        """Bad records passed over in this run's batches plus those its source dropped at load
        (empty captions, missing files, malformed lines: the dataset's `load_skipped`)."""
        dropped = getattr(self.data.dataset, "load_skipped", 0)  # a handed dataset may lack it
        return self.progress.bad_images + int(dropped)


class TrainerProgress:
    """`trainer.step`, `trainer.images_seen`, ...: the trainer's counters, read and written
    through its `state.progress` (the one place they are kept)."""

    state: TrainerState

    @property
    def step(self) -> int:
        return self.state.progress.step

    @step.setter
    def step(self, value: int) -> None:
        self.state.progress.step = value

    @property
    def images_seen(self) -> int:
        return self.state.progress.images_seen

    @images_seen.setter
    def images_seen(self, value: int) -> None:
        self.state.progress.images_seen = value

    @property
    def skipped_steps(self) -> int:
        return self.state.progress.skipped_steps

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self.state.progress.skipped_steps = value

    @property
    def bad_in_row(self) -> int:
        return self.state.progress.bad_in_row

    @bad_in_row.setter
    def bad_in_row(self, value: int) -> None:
        self.state.progress.bad_in_row = value

    @property
    def bad_images(self) -> int:
        return self.state.progress.bad_images

    @bad_images.setter
    def bad_images(self, value: int) -> None:
        self.state.progress.bad_images = value

    @property
    def bad_records(self) -> int:
        """See `TrainerState.bad_records`."""
        return self.state.bad_records
