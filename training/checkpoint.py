"""Training checkpoints: tensors and primitives only, written atomically, read weights_only,
each with a sha256 sidecar checked on load.

    RUN/checkpoint-0000200.pt          torch.save of the trainer state (step 200)
    RUN/checkpoint-0000200.pt.sha256   "<hex>  checkpoint-0000200.pt" (`sha256sum -c` reads it)

The newest `keep` checkpoints are kept, so a damaged newest one falls back to the one before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
from torch import nn

from models.artifacts import atomic_write
from models.artifacts import file_sha256 as _file_sha256
from training.state import Progress

if TYPE_CHECKING:
    from training.build import Networks
    from training.config import TrainConfig
    from training.state import TrainerState

PATTERN = re.compile(r"^checkpoint-(\d{7,})\.pt$")
TRAINED = ("generator", "discriminator", "ema", "opt_g", "opt_d")  # state_dict()s
COUNTERS = ("step", "images_seen", "skipped_steps", "bad_in_row", "bad_images")
REQUIRED_KEYS = (*TRAINED, *COUNTERS, "epoch", "image_in_epoch", "rng", "world_size", "config")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or trusted; the message names the file and why."""


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:07d}.pt"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first (by step)."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*.pt"):
        match = PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trained(networks: Networks) -> dict[str, nn.Module | torch.optim.Optimizer]:
    """What training changes, by checkpoint key (`TRAINED`): each has a state_dict()."""
    return {
        "generator": networks.generator,
        "discriminator": networks.discriminator,
        "ema": networks.ema,
        "opt_g": networks.opt_g,
        "opt_d": networks.opt_d,
    }


def trainer_state(
    state: TrainerState, config: TrainConfig, stream_positions: list[list[int]] | None = None
) -> dict[str, Any]:
    """A trainer's checkpoint: G, D, EMA, both optimisers, the position (steps and images
    seen, epoch and image within it, and for shards the items consumed from each loader
    stream of each rank: `stream_positions`, gathered from every rank), fault counts, RNG
    states and the full resolved config (`describe()`), so the checkpoint alone rebuilds
    any of its networks."""
    from training.config import describe

    if stream_positions is None:
        stream_positions = [list(state.data.stream_positions)]
    return {
        **{key: module.state_dict() for key, module in trained(state.networks).items()},
        **dataclasses.asdict(state.progress),  # the COUNTERS
        "epoch": state.data.epoch,
        "image_in_epoch": state.data.image_in_epoch,
        "stream_positions": stream_positions,
        "batch_size": state.batch_size,
        "rng": rng_state(),
        "world_size": state.info.world_size,
        "config": describe(config),
    }


def restore_trainer(state: TrainerState, saved: dict[str, Any], path: Path) -> None:
    """Load a checkpoint (`trainer_state`'s dict, from any version of this trainer) into
    `state`: weights and optimisers in place, the progress, the data position, the RNGs."""
    from training.faults import RunError, one_line

    info = state.info
    if saved["world_size"] != info.world_size:
        raise RunError(
            f"{path} was written by {saved['world_size']} processes; resume it with the "
            f"same number (got {info.world_size}) so the data order stays the same"
        )
    try:
        for key, module in trained(state.networks).items():
            module.load_state_dict(saved[key])
    except (RuntimeError, ValueError, KeyError) as error:
        reason = one_line(error)
        raise RunError(f"{path}: does not fit this run's networks ({reason})") from None
    state.progress = Progress(
        step=int(saved["step"]),
        images_seen=int(saved["images_seen"]),
        skipped_steps=int(saved["skipped_steps"]),
        bad_in_row=int(saved["bad_in_row"]),
        bad_images=int(saved["bad_images"]),
    )
    _restore_position(state, saved, path)
    set_rng_state(saved["rng"])


def _restore_position(state: TrainerState, saved: dict[str, Any], path: Path) -> None:
    from training.faults import RunError

    data = state.data
    data.epoch, data.image_in_epoch = saved["epoch"], saved["image_in_epoch"]
    positions = saved.get("stream_positions")
    if positions is None:  # a checkpoint from before they were kept
        batch = int(saved.get("batch_size", state.batch_size))
        data.stream_positions = data.positions_after(data.image_in_epoch, batch)
        return
    mine = [int(p) for p in positions[state.info.rank]]
    if len(mine) != len(data.stream_positions) and hasattr(data.dataset, "resume_at"):
        raise RunError(
            f"{path} was written reading the shards with {len(mine)} DataLoader stream(s), "
            f"this run has {len(data.stream_positions)}: resume with --num-workers "
            f"{len(mine)} (each worker reads its own shards)"
        )
    data.stream_positions = (
        mine if len(mine) == len(data.stream_positions) else [0] * len(data.stream_positions)
    )


class _HashingWriter:
    """A file that hashes what passes through it, so the digest is of the bytes written."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.hash = file, hashlib.sha256()
        self.error: OSError | None = None  # what the file raised: torch reports it unreadably

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` atomically with its sha256 sidecar; any OSError (a full disk) leaves the
    previous checkpoints intact and raises CheckpointError naming the file."""
    path = Path(path)
    digests: list[str] = []
    writers: list[_HashingWriter] = []

    def write(file: BinaryIO) -> None:
        writers.append(_HashingWriter(file))
        # torch's stubs ask for an IO[bytes]; it only calls write and flush
        torch.save(state, writers[0])  # type: ignore[arg-type]
        digests.append(writers[0].hash.hexdigest())

    try:
        atomic_write(path, write)
        line = f"{digests[0]}  {path.name}\n"
        atomic_write(sidecar(path), lambda f: f.write(line.encode()))
    except OSError as error:
        raise CheckpointError(f"cannot write checkpoint {path}: {error}") from None
    except RuntimeError as error:
        # torch turns the file's OSError (a full disk: ENOSPC) into "[enforce fail at
        # inline_container.cc] unexpected pos": name the file and the OSError instead
        cause = writers[0].error if writers and writers[0].error else error
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint after checking its sha256; every problem is one CheckpointError line
    naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    check = sidecar(path)
    try:
        expected = check.read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        raise CheckpointError(
            f"{path}: checksum file {check.name} is missing or empty (an interrupted write?)"
        ) from None
    size, actual = path.stat().st_size, _file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 mismatch ({size} bytes, expected {expected[:12]}..., got "
            f"{actual[:12]}...): the file is damaged (truncated, zeroed or overwritten)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling problem is reported the same way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable training checkpoint ({reason})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint of this trainer (no {missing})")
    bad = [name for name in ("generator", "discriminator", "ema") if not _finite(state[name])]
    if bad:
        raise CheckpointError(
            f"{path}: non-finite (NaN or inf) weights in {', '.join(bad)}: not a good checkpoint"
        )
    return state


def _finite(weights: Any) -> bool:
    """False when a state dict holds a NaN or inf; anything else is left to the loader."""
    from training.faults import all_finite

    if not isinstance(weights, dict):
        return True
    return all_finite(t for t in weights.values() if torch.is_tensor(t) and t.is_floating_point())


def load_latest(
    run_dir: str | Path, quarantine: bool = True
) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest checkpoint that loads, with one warning per newer one that did not (with
    `quarantine`, renamed to `*.corrupt`, so that it is never picked again). None when the run
    has no checkpoint; CheckpointError when it has some and none loads."""
    problems: list[str] = []
    candidates = list_checkpoints(run_dir)
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        warnings = []
        for bad in candidates[candidates.index(path) + 1 :] if quarantine else []:
            bad.replace(bad.with_name(bad.name + ".corrupt"))
            sidecar(bad).unlink(missing_ok=True)
        for problem in problems:
            warnings.append(f"{problem}; resuming from {path.name} instead (kept as *.corrupt)")
        return path, state, warnings
    if problems:
        raise CheckpointError(f"no usable checkpoint in {run_dir}: " + "; ".join(problems))
    return None


def load_run_or_file(source: str | Path) -> dict[str, Any]:
    """One checkpoint file, or a run directory's newest good checkpoint (nothing quarantined);
    RunError when `source` is neither."""
    from training.faults import RunError

    source = Path(source)
    if source.is_file():
        return load_checkpoint(source)
    latest = load_latest(source, quarantine=False) if source.is_dir() else None
    if latest is None:
        raise RunError(f"{source} is not a training run (no checkpoint-*.pt in it)")
    return latest[1]


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (and their sidecars)."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)
        sidecar(path).unlink(missing_ok=True)
