"""Every loss term of a few tiny training steps, as exact floats, and hashes of G's and D's
weights after them, for five configurations (the paper's, swap negatives, + w_swap, every D
variant, InfoMax with the dual contrastive loss): run it on two trees and compare the JSON
files to show that a refactor changed no number.

    python scripts/step_fingerprint.py OUT.json [--data DIR] [--steps 3]
    cmp before.json after.json

`--data` is a shapes benchmark root, made there (64 train images at 32 px) when missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

ARMS: dict[str, dict[str, Any]] = {
    "paper": {},
    "swap": {"experiments.swap_negatives": True},
    "swap-wswap": {"experiments.swap_negatives": True, "experiments.w_swap": 2.0},
    "all-d": {
        "experiments.swap_negatives": True,
        "experiments.w_swap": 4.0,
        "experiments.d_coords": True,
        "experiments.d_sentence_head": True,
    },
    "infomax-dual": {
        "discriminator.infomax": True,
        "objective.adversarial": "dual-contrastive",
        "objective.losses": ("sent", "img"),
    },
}


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint(data: Path, options: dict[str, Any], steps: int, run_dir: Path) -> dict[str, Any]:
    from training.config_io import apply_overrides, train_config
    from training.trainer import Trainer

    values = {
        "preset": "tiny",
        "data.source": str(data),
        "optim.steps": steps,
        "optim.batch_size": 8,
        "run.num_workers": 0,
        "run.log_every": 1,
        "run.sample_every": 10**6,
        "run.checkpoint_every": 10**6,
        **options,
    }
    config = train_config(apply_overrides({}, values))
    trainer = Trainer(config, run_dir, progress=False)
    batches = trainer.batches()
    stats = [trainer.train_step(next(batches)) or {} for _ in range(steps)]
    return {
        "stats": [{k: float(v).hex() for k, v in sorted(s.items())} for s in stats],
        "G": digest(trainer.generator),
        "D": digest(trainer.discriminator),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "xmc-fingerprint")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not (args.data / "annotations").is_dir():
        from training.shapes.scenes import make_benchmark

        make_benchmark(args.data, size=32, seed=0, n_train=64, n_val=8, n_test_heldout=8)
    result = {}
    with tempfile.TemporaryDirectory() as runs:
        for name, options in ARMS.items():
            result[name] = fingerprint(args.data, options, args.steps, Path(runs) / name)
            print(name, result[name]["G"][:12], result[name]["D"][:12], flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
