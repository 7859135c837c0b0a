"""A torch.distributed (gloo) rank that reads its shards and writes the image ids it saw."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run(rank: int, world: int, init_file: str, shards: str, out: str) -> None:
    import torch.distributed as dist

    from training.data.shards import ShardCaptions

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        dataset = ShardCaptions(shards, 16, shuffle_buffer=0)  # rank and world from dist
        ids = [item["image_id"] for item in dataset]
        Path(out).write_text(json.dumps({"rank": dataset.rank, "ids": ids}))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    rank, world, init_file, shards, out = sys.argv[1:]
    run(int(rank), int(world), init_file, shards, out)
