"""Two CPU processes under torchrun (gloo): both ranks must end with the same G and D."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.states import assert_identical
from training.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("distributed_worker.py")


def run_two_ranks(data: Path, out: Path, timeout: int = 300, **env: str) -> None:
    """The worker under `torchrun --nproc_per_node 2` (gloo on CPU, nccl on GPUs): it trains
    every case and dumps each rank's G, D and EMA to OUT/{case}-rank{r}.pt."""
    path = os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(WORKER),
            str(data),
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=path, **env),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def two_rank_runs(shapes_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    run_two_ranks(shapes_root, out, OMP_NUM_THREADS="1")
    return out


def _rank(out: Path, case: str, rank: int) -> dict:
    return torch.load(out / f"{case}-rank{rank}.pt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("case", ["local-negatives", "gathered-negatives"])
def test_both_ranks_end_with_the_same_networks(two_rank_runs, case):
    rank0, rank1 = _rank(two_rank_runs, case, 0), _rank(two_rank_runs, case, 1)
    assert rank0["step"] == rank1["step"] == 2 and rank0["world_size"] == 2
    # G's BN statistics come from each rank's own batch and are averaged every step, so G and
    # the EMA agree entirely, buffers included, as D does
    for module in ("discriminator", "generator", "ema"):
        assert_identical(rank0[module], rank1[module], module)
    # the ranks did train (on different halves of the data), not sit at the initialisation
    checkpoint = load_checkpoint(two_rank_runs / case / "checkpoint-0000002.pt")
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 2
    assert_identical(checkpoint["discriminator"], rank0["discriminator"])
    assert float(next(iter(checkpoint["opt_d"]["state"].values()))["step"]) == 4


def test_gathered_negatives_change_the_training(two_rank_runs):
    local = _rank(two_rank_runs, "local-negatives", 0)["discriminator"]
    gathered = _rank(two_rank_runs, "gathered-negatives", 0)["discriminator"]
    assert not all(torch.equal(local[k], gathered[k]) for k in local)
