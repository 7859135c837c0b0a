"""The run directory: what a run writes and where.

RUN/config.json                 the resolved configuration (train + the three networks)
RUN/checkpoint-NNNNNNN.pt       the newest `keep_checkpoints` checkpoints (+ .sha256)
RUN/stats.jsonl                 one JSON record per logged step
RUN/history.jsonl               one record per session start and end (batch, how it ended)
RUN/tb/                         TensorBoard scalars
RUN/samples/step_NNNNNNN.png    sample grids of fixed captions (+ captions.txt)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from models.artifacts import write_json_atomic
from training.checkpoint import checkpoint_name, list_checkpoints, prune_checkpoints
from training.faults import RunError
from training.logs import append_line

NETWORKS = ("generator", "discriminator", "text_encoder")


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.samples = self.path / "samples"
        self.stats_path = self.path / "stats.jsonl"
        self.history_path = self.path / "history.jsonl"
        self.tensorboard = self.path / "tb"

    def check_config(self, described: dict[str, Any]) -> None:
        """An existing run must have been written with the same networks."""
        if not self.config_path.exists():
            return
        from training.config_io import upgrade

        saved = upgrade(json.loads(self.config_path.read_text()))  # an older run's too
        changed = sorted(k for k in NETWORKS if saved.get(k) != described[k])
        if changed:
            raise RunError(
                f"{self.path} holds a run with a different {', '.join(changed)}; "
                "pick another run directory"
            )

    def create(self, described: dict[str, Any]) -> list[Path]:
        """Make the folders, write config.json and remove the temp files a killed write left;
        returns the removed ones."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.samples.mkdir(exist_ok=True)
        stale = sorted(self.path.glob("*.tmp")) + sorted(self.samples.glob("*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        try:
            write_json_atomic(self.config_path, described)
        except OSError as error:  # a full disk: name the file
            raise RunError(f"cannot write {self.config_path}: {error}") from None
        return stale

    def checkpoint_path(self, step: int) -> Path:
        return self.path / checkpoint_name(step)

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.path)

    def prune(self, keep: int) -> None:
        prune_checkpoints(self.path, keep)

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    def record(self, event: str, **fields: Any) -> None:
        """Append one line to history.jsonl (a session without an "end" line was killed)."""
        entry = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
        append_line(self.history_path, json.dumps(entry, sort_keys=True))

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text().splitlines() if line]
