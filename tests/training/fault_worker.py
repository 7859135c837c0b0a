"""`xmc-train` under torchrun with one fault injected on one rank, from the environment:

    XMC_FAULT=RANK:STEP:KIND  python -m torch.distributed.run ... fault_worker.py RUN FLAGS...

KIND `step`: an exception inside the training step (mid-step, in the middle of collectives);
`batch`: an exception while taking the next batch (between two steps); `worker`: that rank's
DataLoader reports a worker killed by a signal (as the DataLoader words it), a stop to save.
"""

from __future__ import annotations

import os

from training import trainer as trainer_module
from training.cli import train_main

RANK, STEP, KIND = os.environ["XMC_FAULT"].split(":")

_train_step = trainer_module.Trainer.train_step
_take = trainer_module.Trainer._take


def _due(trainer) -> bool:
    return trainer.info.rank == int(RANK) and trainer.step == int(STEP)


def train_step(self, batch):
    if KIND == "step" and _due(self):
        raise ValueError(f"injected failure in step {self.step + 1}")
    return _train_step(self, batch)


def take(self, batches, stop):
    if KIND == "batch" and _due(self):
        raise ValueError(f"injected failure taking batch {self.step + 1}")
    if KIND == "worker" and _due(self):
        return _take(self, _worker_killed(), stop)
    return _take(self, batches, stop)


def _worker_killed():
    raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
    yield  # a generator, as the stream is


trainer_module.Trainer.train_step = train_step
trainer_module.Trainer._take = take

if __name__ == "__main__":
    raise SystemExit(train_main())
