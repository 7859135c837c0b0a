"""Two CPU processes under torchrun (gloo): both ranks must end with the same G and D."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.training.states import assert_identical
from training.checkpoint import load_checkpoint
from training.config import OptimConfig

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


# ---------------------------------------------------------------------------- many ranks, one
EQUIVALENCE = Path(__file__).with_name("equivalence_worker.py")
FAULTS = Path(__file__).with_name("fault_worker.py")
STEPS = 3


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=path, **extra)


def _torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def one_and_two(shapes_root, tmp_path_factory) -> Path:
    """The same 3 steps at a global batch of 8: one process, then 2 gloo ranks of 4."""
    out = tmp_path_factory.mktemp("equivalence")
    args = [str(EQUIVALENCE), str(shapes_root), str(out), str(STEPS)]
    for command in ([sys.executable, *args], [*_torchrun(), *args]):
        result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_two_ranks_train_as_one_process_at_the_same_global_batch(one_and_two):
    """With the noise drawn for the global batch and G's BN taken per rank in both (the two
    differences by design, equivalence_worker.py), 2 ranks end where 1 process does. The
    exceptions are G's conv biases that feed a BatchNorm: their exact gradient is 0 (the norm
    removes any shift), so what they get is float rounding, which Adam scales to lr-sized
    steps of either sign; and the BN running means, which follow those biases."""
    import re

    one = torch.load(one_and_two / "world1.pt", weights_only=True)
    two = torch.load(one_and_two / "world2.pt", weights_only=True)
    pre_norm_bias = re.compile(r"_blocks\.\d+\.(conv1|conv2|shortcut)\.bias$")
    compared = 0
    for net in ("discriminator", "generator", "ema"):
        for name, value in one[net].items():
            other = two[net][name]
            if net != "discriminator" and pre_norm_bias.search(name):
                # no more than a few lr_g-sized Adam steps away from their zero start
                assert value.abs().max() <= 2 * STEPS * OptimConfig().lr_g, f"{net}.{name}"
                continue
            if name.endswith("running_mean"):
                assert torch.allclose(value, other, atol=2e-4), f"{net}.{name}"
                continue
            assert torch.allclose(value, other, rtol=1e-4, atol=1e-5), f"{net}.{name}"
            compared += 1
    assert compared > 50


@pytest.mark.parametrize(("fault", "code"), [("1:1:step", 1), ("0:1:batch", 1), ("1:1:worker", 0)])
def test_a_fault_on_one_rank_ends_every_rank_in_bounded_time(shapes_root, tmp_path, fault, code):
    run_dir = tmp_path / "run"
    flags = ["--preset", "tiny", "--data", str(shapes_root), "--steps", "6", "--batch-size", "8"]
    flags += ["--num-workers", "0", "--no-progress", "--set", "run.checkpoint_every=1"]
    start = time.monotonic()
    result = subprocess.run(
        [*_torchrun(), str(FAULTS), str(run_dir), *flags],
        capture_output=True,
        text=True,
        env=_env(XMC_FAULT=fault),
        timeout=240,
    )
    seconds = time.monotonic() - start
    rank, step, kind = fault.split(":")
    assert (result.returncode == 0) == (code == 0), result.stderr[-3000:]
    assert seconds < 180, f"{seconds:.0f} s"  # imports, MiniLM and a step; a hang never ends
    if kind == "worker":  # a stop: every rank saves at the same step, exit 0
        checkpoint = load_checkpoint(run_dir / "checkpoint-0000001.pt")
        assert checkpoint["world_size"] == 2 and len(checkpoint["stream_positions"]) == 2
        assert not (run_dir / "checkpoint-0000002.pt").exists()
        assert "interrupted at step 1" in result.stderr
        return
    # that rank's own error, named with its rank, is among the last words
    assert f"xmc-train: error: rank {rank}: injected failure" in result.stderr, result.stderr[
        -3000:
    ]
