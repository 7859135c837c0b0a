"""What can go wrong in a long run, named: the errors that end it, the checks that catch poison
before it is trained on, and the signal handling that turns Ctrl-C / SIGTERM into a clean stop.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable

import torch

from models.artifacts import one_line  # noqa: F401  (its home is models; training imports it here)


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
    loop stops between two steps and saves; the previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


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
