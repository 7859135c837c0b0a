"""The three log sinks of a run, each a small object: stats.jsonl, TensorBoard, a progress bar.

`TrainLogs` fans one record out to all three (on the main process only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from models.artifacts import atomic_write
from training.faults import RunError


def finite_or_none(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or Infinity: non-finite numbers become null."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()
    }


class StatsLog:
    """stats.jsonl: one strictly valid JSON record per logged step, in step order."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Keep the records of steps <= `step` (the resumed checkpoint's) and drop the rest,
        with any half-written last line a kill left, so resumed runs never repeat a step."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", math.inf) <= step:
                kept.append(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        text = "".join(kept)
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(finite_or_none(record), sort_keys=True, allow_nan=False)
        append_line(self.path, line)


def append_line(path: Path, line: str) -> None:
    """Append one line; an OSError (a full disk: ENOSPC) becomes one RunError naming the file
    (a half-written line is dropped on resume: `StatsLog.truncate_after`)."""
    try:
        with path.open("a") as f:
            f.write(line + "\n")
    except OSError as error:
        raise RunError(f"cannot append to {path}: {error}") from None


class TensorBoardLog:
    def __init__(self, folder: Path, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed session wrote past the resumed checkpoint
        self.writer = SummaryWriter(str(folder), purge_step=step)

    def write(self, record: dict[str, Any]) -> None:
        step = record["step"]
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)) and v is not None:
                self.writer.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


class ProgressBar:
    """A tqdm bar counted in images seen; the postfix shows the step, losses and fault counts."""

    def __init__(self, total_images: int, images_seen: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total_images, initial=images_seen, unit="img", unit_scale=True, dynamic_ncols=True
        )

    def advance(self, images: int) -> None:
        self.bar.update(images)

    def write(self, record: dict[str, Any]) -> None:
        def number(key: str) -> str:
            value = record.get(key)
            return "-" if value is None else f"{value:.3f}"

        self.bar.set_postfix(
            step=record["step"],
            d=number("d_loss"),
            g=number("g_loss"),
            skipped=record.get("skipped_steps", 0),
            bad=record.get("bad_records", 0),
        )

    def close(self) -> None:
        self.bar.close()


class TrainLogs:
    """stats.jsonl + TensorBoard + (optionally) a progress bar, on the main process only."""

    def __init__(self, run_dir, *, step: int, images: tuple[int, int], main: bool, bar: bool):
        self.sinks: list[Any] = []
        self.bar: ProgressBar | None = None
        if main:
            stats = StatsLog(run_dir.stats_path)
            stats.truncate_after(step)
            self.sinks = [stats, TensorBoardLog(run_dir.tensorboard, step)]
        if main and bar:
            self.bar = ProgressBar(total_images=images[1], images_seen=images[0])
            self.sinks.append(self.bar)

    @classmethod
    def for_trainer(cls, trainer) -> TrainLogs:
        """The sinks of a trainer's fit(): the bar runs from its images seen to its last step."""
        per_step = trainer.batch_size * trainer.info.world_size
        left = max(trainer.config.optim.steps - trainer.step, 0) * per_step
        return cls(
            trainer.run,
            step=trainer.step,
            images=(trainer.images_seen, trainer.images_seen + left),
            main=trainer.info.is_main,
            bar=trainer.progress,
        )

    @staticmethod
    def record(trainer, sums: dict[str, float], count: int, seconds: float) -> dict[str, Any]:
        """The mean losses of the last `count` steps, with the position and the fault counts."""
        per_step = trainer.batch_size * trainer.info.world_size
        record: dict[str, Any] = {k: v / count for k, v in sums.items()}
        record.update(
            step=trainer.step,
            images=trainer.images_seen,
            epoch=trainer.data.epoch,
            batch=per_step,
            img_per_s=count * per_step / seconds,
            skipped_steps=trainer.skipped_steps,
            bad_records=trainer.bad_records,
        )
        return record

    def advance(self, images: int) -> None:
        if self.bar is not None:
            self.bar.advance(images)

    def write(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        for sink in self.sinks:
            if hasattr(sink, "close"):
                sink.close()
