"""Run under `torchrun --nproc_per_node 2`: train the tiny preset in one run directory per
case and dump this rank's G, D and EMA state dicts to OUT/{case}-rank{r}.pt.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/training/distributed_worker.py DATA OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training.config import DataConfig, ObjectiveConfig, OptimConfig, RunConfig, TrainConfig
from training.trainer import Trainer

CASES = {"local-negatives": False, "gathered-negatives": True}


def main(data: str, out: str) -> None:
    for case, gather in CASES.items():
        config = TrainConfig(
            preset="tiny",
            data=DataConfig(source=data),
            optim=OptimConfig(steps=2, batch_size=8),
            objective=ObjectiveConfig(gather_negatives=gather),
            run=RunConfig(num_workers=0, log_every=1, sample_every=1000, checkpoint_every=1000),
        )
        trainer = Trainer(config, Path(out) / case, progress=False)
        summary = trainer.fit()
        state = {
            "generator": trainer.generator.state_dict(),
            "discriminator": trainer.discriminator.state_dict(),
            "ema": trainer.ema.state_dict(),
            "step": summary["step"],
            "world_size": trainer.info.world_size,
        }
        torch.save(state, Path(out) / f"{case}-rank{trainer.info.rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
