"""What can go wrong in a long run, named: the errors that end it, the checks that catch poison
before it is trained on, and the signal handling that turns Ctrl-C / SIGTERM into a clean stop.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import torch

from models.artifacts import one_line  # noqa: F401  (its home is models; training imports it here)

# what signal.signal takes and returns
SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class RunError(RuntimeError):
    """A run directory that cannot be started or resumed; the message says why."""


class NonFiniteError(RuntimeError):
    """Too many training steps in a row had non-finite losses or gradients (or the weights
    became non-finite): the run stopped without overwriting its last good checkpoint."""


class NonFiniteStep(Exception):  # noqa: N818 - a signal between the phases, not an error
    """Raised inside one step when a phase's loss or gradients are not finite."""

    def __init__(self, phase: str, losses: dict[str, float]) -> None:
        self.phase, self.losses = phase, losses
        shown = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"non-finite {phase} ({shown})")


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every element of every tensor is finite (one device sync)."""
    # the max of |t| neither overflows nor hides a NaN (max propagates NaN)
    peaks = [t.detach().abs().max().float() for t in tensors if t.numel()]
    return not peaks or bool(torch.isfinite(torch.stack(peaks)).all())


def warn(message: str) -> None:
    print(f"xmc-train: warning: {message}", file=sys.stderr, flush=True)


class StopSignals:
    """Within `with`, SIGINT and SIGTERM set `requested` instead of killing the process, so the
    loop stops between two steps and saves; the previous handlers come back on exit.

    SIGCHLD only sets `child_exited`: torch's own handler raises "DataLoader worker is killed
    by signal" wherever the main process happens to be, in the middle of a step included,
    where nothing can be saved. Without it, a dead worker is found by the DataLoader when it
    waits for that worker's next batch (within its 5 s status check), between two steps, and
    the trainer stops there and saves (`worker_died`)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.child_exited = False
        self._previous: dict[int, SignalHandler] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def _child(self, signum, frame) -> None:
        self.child_exited = True

    def __enter__(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        if hasattr(signal, "SIGCHLD"):
            _install_torch_sigchld_handler()  # now, so it cannot wrap ours later
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._child)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _install_torch_sigchld_handler() -> None:
    """torch installs its SIGCHLD handler once, when the first multi-worker DataLoader starts,
    on top of whatever is there; installed first, it stays under `StopSignals`' own."""
    try:
        from torch.utils.data._utils.signal_handling import _set_SIGCHLD_handler
    except ImportError:  # pragma: no cover - a torch without it has nothing to install
        return
    _set_SIGCHLD_handler()


def worker_died(error: BaseException) -> bool:
    """True for the DataLoader's error when one of its worker processes died (killed by a
    signal, the OOM killer included) rather than raised: a stop to save at, not a failure."""
    text = str(error)
    return (
        isinstance(error, RuntimeError)
        and "DataLoader worker" in text
        and ("exited unexpectedly" in text or "killed by signal" in text)
    )


def ignore_interrupt(worker_id: int) -> None:
    """DataLoader workers leave stop signals to the main process, which stops and saves between
    two steps. A signal sent to the whole process group (Ctrl-C in a terminal, `timeout`,
    `kill -TERM -PGID`) would otherwise kill the workers first and end the run in an error: each
    worker moves to a process group of its own and ignores SIGINT. They keep SIGTERM's default:
    the main process terminates them with it when it shuts the loader down or exits (a worker
    that ignored it made failing runs hang in `multiprocessing`'s exit join), and a worker whose
    parent died exits by itself (torch's worker watchdog)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
