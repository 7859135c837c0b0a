"""Every training path keeps its promise: a shard run resumes from an epoch's end, the own-data
flow runs at the default flags, a failed start leaves nothing behind, a signal to a DataLoader
worker saves and exits 0, a full disk is named with its file, a non-finite checkpoint is never
resumed or exported, --dry-run shows the run's own config, and a start says what it loads."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.training.processes import train_process as _child
from tests.training.states import assert_identical, trained_state
from training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from training.data.prepare import main as prepare_main

pytestmark = pytest.mark.usefixtures("single_thread")


def _flags(data: Path, steps: int, *extra: str, workers: int = 0) -> list[str]:
    return [
        *("--preset", "tiny", "--data", str(data), "--steps", str(steps)),
        *("--batch-size", "8", "--num-workers", str(workers), "--no-progress"),
        *("--set", "run.log_every=1", "--set", "run.sample_every=1000"),
        *extra,
    ]


@pytest.fixture
def train(train_cli, capsys):
    """xmc-train in this process -> (exit status, stderr)."""

    def run(args: list[str]) -> tuple[int, str]:
        code = train_cli(args)
        return code, capsys.readouterr().err

    return run


@pytest.fixture(scope="module")
def shards(small_shapes_root: Path, tmp_path_factory) -> Path:
    """The 24-image shapes set as 4 prepared shards of 6: with batch 8 and one loader stream
    an epoch is 3 steps."""
    from training.data.coco import load_captions_file

    out = tmp_path_factory.mktemp("shards")
    folder = out / "folder"
    folder.mkdir()
    records = load_captions_file(
        small_shapes_root / "annotations" / "captions_train.json", small_shapes_root / "train"
    )
    for record in records:
        shutil.copy(record.path, folder / record.path.name)
        (folder / record.path.name).with_suffix(".txt").write_text("\n".join(record.captions))
    args = [str(folder), str(out / "shards"), "--resolution", "32", "--quiet", "--workers", "1"]
    assert prepare_main([*args, "--shard-size", "6"]) == 0
    return out / "shards"


def _newest(run_dir: Path) -> dict:
    return load_checkpoint(list_checkpoints(run_dir)[-1])


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("stop", [3, 6])  # each an epoch's end
def test_a_shard_run_stopped_at_an_epoch_end_resumes_bit_exactly(shards, tmp_path, train, stop):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train([str(straight), *_flags(shards, stop + 2)])[0] == 0
    assert train([str(resumed), *_flags(shards, stop)])[0] == 0
    stopped = _newest(resumed)
    # before: "xmc-train: error: an epoch of the shards gave no batch of 8 images", exit 1
    code, err = train([str(resumed), "--steps", str(stop + 2), "--no-progress"])
    assert code == 0, err
    assert stopped["stream_positions"] == [[24]]  # it had stopped with the epoch consumed
    assert_identical(trained_state(_newest(resumed)), trained_state(_newest(straight)))


# ---------------------------------------------------------------------------- own data
def test_the_own_data_flow_runs_at_the_default_shard_size_and_workers(shards, tmp_path, train):
    one = tmp_path / "one-shard"
    assert prepare_main([str(shards.parent / "folder"), str(one), "--quiet"]) == 0  # no flags
    assert len(list(one.glob("*.tar"))) == 1  # 24 images, 10,000 a shard by default
    assert json.loads((one / "prepare.json").read_text())["resolution"] == 256
    flags = _flags(one, 2)
    flags[flags.index("--num-workers") : flags.index("--num-workers") + 2] = []  # default: 2
    # before: "1 shard(s) cannot feed 1 rank(s) x 2 worker(s)", exit 1
    code, err = train([str(tmp_path / "run"), *flags])
    assert code == 0, err
    assert "1 DataLoader worker(s), not 2: this rank has 1 shard(s)" in err
    assert "--shard-size" in err and _newest(tmp_path / "run")["step"] == 2


def test_a_failed_start_leaves_nothing_that_changes_the_next(shards, tmp_path, train):
    run_dir = tmp_path / "run"
    code, err = train([str(run_dir), *_flags(shards, 2), "--batch-size", "32"])  # 24 images
    assert code == 1 and "gave no batch of 32 images" in err and "--batch-size" in err, err
    # before: checkpoint-0000000.pt and config.json stayed, and the next start resumed them
    assert not list_checkpoints(run_dir) and not (run_dir / "config.json").exists()
    code, err = train([str(run_dir), *_flags(shards, 1), "--preset", "shapes-32"])
    assert code == 0 and "resuming" not in err, err
    assert json.loads((run_dir / "config.json").read_text())["train"]["preset"] == "shapes-32"


# ---------------------------------------------------------------------------- signals
def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize("how", ["term-worker", "kill-worker", "term-all"])
def test_a_signal_to_a_worker_or_the_group_saves_and_exits_0(shapes_root, tmp_path, how):
    run_dir = tmp_path / "run"
    flags = _flags(shapes_root, 1000, "--set", "run.checkpoint_every=1", workers=2)
    child = _child([str(run_dir), *flags])
    try:
        deadline = time.monotonic() + 150
        while not list_checkpoints(run_dir) or len(_children(child.pid)) < 2:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no checkpoint or no workers in 150 s"
            time.sleep(0.2)
        workers = _children(child.pid)
        if how == "term-all":  # what Kubernetes and Slurm do: every process of the job
            for pid in [child.pid, *workers]:
                os.kill(pid, signal.SIGTERM)
        else:
            os.kill(workers[0], signal.SIGTERM if how == "term-worker" else signal.SIGKILL)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # before: exit 1, "DataLoader worker (pid N) is killed by signal: Terminated.", steps lost
    assert child.returncode == 0, err
    step = _newest(run_dir)["step"]
    assert f"interrupted at step {step}; checkpoint saved" in err and "Traceback" not in err
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["step"] == step  # no step trained after the last checkpoint was lost


# ---------------------------------------------------------------------------- full disk
class _FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_full_disk_is_named_with_the_file(tmp_path, monkeypatch) -> None:
    import training.checkpoint as checkpoint
    from training.checkpoint import CheckpointError
    from training.faults import RunError
    from training.logs import StatsLog

    monkeypatch.setattr(checkpoint, "atomic_write", lambda path, write: write(_FullDisk(500)))
    path = tmp_path / "checkpoint-0000001.pt"
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(path, {"weights": torch.zeros(4096)})
    # before: "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
    assert str(error.value) == (
        f"cannot write checkpoint {path}: [Errno 28] No space left on device"
    )
    if not Path("/dev/full").exists():
        return
    with pytest.raises(RunError) as error:  # /dev/full: every write is ENOSPC
        StatsLog(Path("/dev/full")).write({"step": 1, "d_loss": 1.0})
    assert str(error.value) == "cannot append to /dev/full: [Errno 28] No space left on device"


# ---------------------------------------------------------------------------- non-finite
def test_a_non_finite_checkpoint_is_never_resumed_or_exported(
    small_shapes_root, tmp_path, train, capsys
) -> None:
    from training.cli import export_main

    run_dir = tmp_path / "run"
    flags = _flags(small_shapes_root, 2, "--set", "run.checkpoint_every=1")
    assert train([str(run_dir), *flags])[0] == 0
    newest = run_dir / "checkpoint-0000002.pt"
    state = load_checkpoint(newest)
    state["generator"] = {k: v.clone() for k, v in state["generator"].items()}
    next(v for v in state["generator"].values() if v.is_floating_point()).fill_(float("nan"))
    save_checkpoint(newest, state)  # a valid checksum over NaN weights
    # before: exit 0 and NaN weights in model.safetensors
    assert export_main([str(newest), str(tmp_path / "out")]) == 2
    assert "non-finite (NaN or inf) weights in generator" in capsys.readouterr().err
    assert export_main([str(run_dir), str(tmp_path / "older")]) == 0
    config = json.loads((tmp_path / "older" / "config.json").read_text())
    assert config["training"]["steps"] == 1
    # before: loaded as good, then max_bad_steps on every re-run
    code, err = train([str(run_dir), "--steps", "3", "--no-progress"])
    assert code == 0 and "resuming from checkpoint-0000001.pt" in err, err
    assert _newest(run_dir)["step"] == 3


# ---------------------------------------------------------------------------- dry run
def test_dry_run_prints_the_config_the_run_holds(small_shapes_root, tmp_path, train, capsys):
    from training.cli import train_main

    run_dir = tmp_path / "run"
    assert train([str(run_dir), *_flags(small_shapes_root, 1)])[0] == 0
    (run_dir / "config.json").unlink()  # a folder of checkpoints alone
    assert train_main([str(run_dir), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    # before: the default preset (shapes-64), which the real run then refused
    assert json.loads(out)["train"]["preset"] == "tiny"
    assert "its saved config" in err and "checkpoint-0000001.pt" in err
    code, err = train([str(run_dir), "--steps", "2", "--no-progress"])
    assert code == 0 and "resuming" in err, err


# ---------------------------------------------------------------------------- progress
def test_a_start_says_what_it_loads_before_the_progress_bar(small_shapes_root, tmp_path, train):
    flags = [f for f in _flags(small_shapes_root, 1) if f != "--no-progress"]
    code, err = train([str(tmp_path / "run"), *flags])
    assert code == 0, err
    before_bar = err[: err.index("%|")]
    for phase in ("starting", "building the tiny networks", "reading the data index"):
        assert f"xmc-train: {phase}" in before_bar, err
    assert "looking for checkpoints" in before_bar and "opening the logs" in before_bar
