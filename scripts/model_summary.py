"""Print each preset's trainable parameter counts and time one 64 px generator forward.

python scripts/model_summary.py [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models import Discriminator, Generator
from models.config import PRESETS


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'preset':<10}{'res':>5}{'G params':>14}{'D params':>14}")
    for name, preset in PRESETS.items():
        with torch.device("meta"):  # counts need no memory or init time
            g, d = Generator(preset.generator), Discriminator(preset.discriminator)
        print(f"{name:<10}{preset.generator.resolution:>5}{trainable(g):>14,}{trainable(d):>14,}")

    generator = Generator.from_preset("shapes-64").eval()
    c = generator.config
    torch.manual_seed(0)
    inputs = (
        torch.randn(args.batch, c.z_dim),
        torch.randn(args.batch, c.sentence_dim),
        torch.randn(args.batch, 17, c.word_dim),
        torch.ones(args.batch, 17, dtype=torch.bool),
    )
    times = []
    with torch.inference_mode():
        generator(*inputs)  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            generator(*inputs)
            times.append(time.perf_counter() - start)
    print(
        f"\nshapes-64 generator forward, batch {args.batch}, {torch.get_num_threads()} threads: "
        f"median {statistics.median(times):.3f} s (min {min(times):.3f} s, {args.repeats} runs)"
    )


if __name__ == "__main__":
    main()
