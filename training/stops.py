"""How a training run stops (the trainer's `fit` calls these): taking the next batch under
SIGINT / SIGTERM and DataLoader workers that die, on every rank alike; saving after an error
between two steps, never after a failed one; and a failed fresh start leaving nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from training.checkpoint import CheckpointError
from training.distributed import any_flag
from training.faults import NonFiniteError, StopSignals, one_line, warn, worker_died

__all__ = ["StopHandling"]


class StopHandling:
    """The stop and save paths of `Trainer.fit` (a base of `Trainer`, whose state they read:
    info, device, data, step, images_seen, run, resumed_from and `save`)."""

    info: Any
    device: Any
    data: Any
    run: Any
    step: int
    images_seen: int
    resumed_from: Any
    _saved_images: int

    def save(self) -> Any:
        raise NotImplementedError

    def _next_batch(self, batches: Iterator[dict[str, Any]], stop: StopSignals):
        """The next batch, or None when a stop was asked for or a DataLoader worker died (on
        any rank). Under torchrun every rank takes its batch first and then all agree, so
        that a worker dying on one rank stops them all at the same step; a batch taken but
        not trained on goes back to the position (`DataStream.untake`)."""
        if not self.info.enabled:
            return None if stop.requested else self._take(batches, stop)
        batch = None if stop.requested else self._take(batches, stop)
        if any_flag(batch is None, self.info, self.device):
            if batch is not None:
                self.data.untake()
            return None
        return batch

    def _take(self, batches: Iterator[dict[str, Any]], stop: StopSignals):
        try:
            return next(batches)
        except RuntimeError as error:
            if worker_died(error) and not stop.requested:
                # a signal to a worker alone (an orchestrator signals every process of a job)
                warn(f"{one_line(error)}: stopping at step {self.step} to save")
            elif not stop.requested:
                raise
            return None  # a worker stopped by a signal: stop cleanly

    def _save_after(self, error: BaseException, mid_step: bool) -> None:
        """After an error between two steps, keep the progress; after a failed step, a failed
        save or non-finite weights, leave the last good checkpoint as it is."""
        if mid_step or isinstance(error, (CheckpointError, NonFiniteError)):
            return
        if self.info.enabled:
            # the error may be this rank's alone: the others are in a collective of the next
            # step and a save (which gathers every rank's data position) would wait for them
            warn(f"rank {self.info.rank}: not saved after the error; resume from the last save")
            return
        if self.images_seen == self._saved_images:
            return  # nothing new to keep (a start that failed before its first step)
        try:
            self.save()
        except Exception as again:  # noqa: BLE001 - the first error is the one to report
            warn(f"could not save after the error: {one_line(again)}")

    def _forget_failed_start(self) -> None:
        """A fresh run that failed before its first checkpoint leaves no config.json: the
        next start, with other flags, must not be taken for a resume of this one (its saved
        config is the base of `xmc-train`'s, and a changed preset would be refused)."""
        if self.info.is_main and self.resumed_from is None and not self.run.checkpoints():
            self.run.config_path.unlink(missing_ok=True)
