"""Train the tiny preset a few steps at a global batch of 8 (gathered negatives), either as one
process or as each rank of `torchrun --nproc_per_node 2` (4 images a rank), and dump the
networks to OUT/world{W}.pt, so that the two can be compared.

    python tests/training/equivalence_worker.py DATA OUT STEPS
    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/training/equivalence_worker.py DATA OUT STEPS

Two things differ between W ranks and one process by design, and both are put aside here
(docs/training.md, "Many ranks and one"):
- the noise z: each rank draws its own, seeded by (seed, step, rank, sub-batch); here every
  process draws the global batch's z from (seed, step, sub-batch) and takes its rows, those
  of the images it holds (rank r holds rows r, r + W, ... of each global sub-batch);
- G's BatchNorm statistics: per rank, over its own images (as the official code takes them,
  per device); here the one process normalises each of the W interleaved groups of its
  batch by that group's statistics (what the W ranks do) and updates the running
  statistics with their mean (what `average_buffers` makes of the W ranks' updates).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import DataConfig, ObjectiveConfig, OptimConfig, RunConfig, TrainConfig
from training.data.stream import derived_seed
from training.trainer import Trainer

GLOBAL_BATCH = 8  # images per step over all processes: two sub-batches of 4
RANKS = 2  # the world the one process stands in for


def global_noise(self: Trainer, n: int, sub: int) -> torch.Tensor:
    """This process's rows of the global sub-batch's z: (n, Z)."""
    world, rank = self.info.world_size, self.info.rank
    seed = derived_seed(self.config.run.seed, self.step, sub)
    z = torch.randn(
        n * world, self.model_configs.generator.z_dim, generator=torch.Generator().manual_seed(seed)
    )
    return z[rank::world].to(self.device)


_batch_norm_forward = nn.BatchNorm2d.forward


def grouped_batch_norm(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BN of x (B, C, H, W) as RANKS ranks holding rows r, r + RANKS, ... would compute it."""
    if not self.training:
        return _batch_norm_forward(self, x)
    groups = [x[r::RANKS] for r in range(RANKS)]  # (B / RANKS, C, H, W) each
    out = [F.batch_norm(g, None, None, training=True, eps=self.eps) for g in groups]
    with torch.no_grad():
        mean = torch.stack([g.mean((0, 2, 3)) for g in groups]).mean(0)
        var = torch.stack([g.var((0, 2, 3), unbiased=True) for g in groups]).mean(0)
        self.running_mean.lerp_(mean, self.momentum)
        self.running_var.lerp_(var, self.momentum)
        self.num_batches_tracked += 1
    return torch.stack(out, 1).reshape(x.shape)  # back to the rows' order


def main(data: str, out: str, steps: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    Trainer._noise = global_noise
    if world == 1:
        nn.BatchNorm2d.forward = grouped_batch_norm
    config = TrainConfig(
        preset="tiny",
        data=DataConfig(source=data, random_flip=False),
        optim=OptimConfig(steps=int(steps), batch_size=GLOBAL_BATCH // world),
        # one process holds every negative already
        objective=ObjectiveConfig(gather_negatives=world > 1),
        run=RunConfig(num_workers=0, log_every=1, sample_every=1000, checkpoint_every=1000),
    )
    trainer = Trainer(config, Path(out) / f"run-world{world}", progress=False)
    trainer.fit()
    if trainer.info.rank == 0:
        state = {
            name: getattr(trainer, name).state_dict()
            for name in ("generator", "discriminator", "ema")
        }
        torch.save(state, Path(out) / f"world{world}.pt")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
