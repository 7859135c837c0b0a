"""Fault injection: each fault a run left overnight can meet, injected and asserted (exit status
and time, message, checkpoint intact, counts). Tiny preset, CPU; the faults whose exit status
or time matter run `xmc-train` in a subprocess with two DataLoader workers."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.training.processes import train_process as _child
from tests.training.states import assert_identical, trained_state
from training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, sidecar

EXIT_WITHIN_S = 90  # imports + MiniLM + a few steps on a loaded 2-core CPU; a hang never ends


def _flags(data: Path, steps: int, *extra: str) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--num-workers",
        "2",
        "--no-progress",
        "--set",
        "run.log_every=1",
        "--set",
        "run.sample_every=1000",
        "--set",
        "run.checkpoint_every=1",
        *extra,
    ]


def _finish(child: subprocess.Popen) -> tuple[int, str, float]:
    start = time.monotonic()
    try:
        _, err = child.communicate(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail(f"xmc-train did not exit within {EXIT_WITHIN_S} s (hung)")
    return child.returncode, err, time.monotonic() - start


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("xmc-train: error: ")]


def _strict_records(path: Path) -> list[dict]:
    """stats.jsonl parsed as strict JSON: NaN or Infinity would raise."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def data_copy(small_shapes_root, tmp_path) -> Path:
    """A private copy of the 24-image shapes set, to damage."""
    return Path(shutil.copytree(small_shapes_root, tmp_path / "data"))


# ---------------------------------------------------------------------------- never hangs
def test_corrupt_image_with_workers_and_strict_data_exits_1_naming_the_file(data_copy, tmp_path):
    bad = data_copy / "train" / sorted(os.listdir(data_copy / "train"))[5]
    bad.write_text("junk\n")
    run_dir = tmp_path / "run"
    code, err, seconds = _finish(_child([str(run_dir), *_flags(data_copy, 3, "--strict-data")]))
    assert code == 1 and seconds < EXIT_WITHIN_S, err
    errors = _error_lines(err)
    assert len(errors) == 1 and f"cannot decode image {bad}" in errors[0], err
    assert "Traceback" not in err
    for path in list_checkpoints(run_dir):  # whatever was saved before it is intact
        load_checkpoint(path)


def test_corrupt_image_is_skipped_and_counted_by_default(data_copy, tmp_path):
    bad = data_copy / "train" / sorted(os.listdir(data_copy / "train"))[5]
    bad.write_bytes(b"")
    run_dir = tmp_path / "run"
    code, err, _ = _finish(_child([str(run_dir), *_flags(data_copy, 3)]))
    assert code == 0, err
    assert (
        "1 bad records skipped" in err
        and f"skipped a bad record (undecodable_image, 1 so far): cannot decode image {bad}" in err
    )
    records = _strict_records(run_dir / "stats.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["bad_records"] == 1
    assert load_checkpoint(list_checkpoints(run_dir)[-1])["bad_images"] == 1


FULL_DISK = """
import errno, torch
_save, _calls = torch.save, []
def _full_disk(obj, f, *args, **kwargs):
    _calls.append(1)
    if len(_calls) < 2:
        return _save(obj, f, *args, **kwargs)
    f.write(b"half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")
torch.save = _full_disk
"""


def test_full_disk_at_checkpoint_exits_1_and_keeps_the_previous_one(shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    code, err, seconds = _finish(_child([str(run_dir), *_flags(shapes_root, 5)], FULL_DISK))
    assert code == 1 and seconds < EXIT_WITHIN_S, err
    errors = _error_lines(err)
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0] == (
        f"xmc-train: error: cannot write checkpoint {run_dir / 'checkpoint-0000002.pt'}: "
        "[Errno 28] No space left on device"
    )
    assert [p.name for p in list_checkpoints(run_dir)] == ["checkpoint-0000001.pt"]
    assert load_checkpoint(run_dir / "checkpoint-0000001.pt")["step"] == 1
    assert not list(run_dir.glob("*.tmp"))


# ---------------------------------------------------------------------------- kill -9
def test_kill_9_then_resume_is_bit_identical(small_shapes_root, tiny_config, new_trainer, tmp_path):
    run_dir = tmp_path / "run"
    child = _child([str(run_dir), *_flags(small_shapes_root, 1000)])
    try:
        deadline = time.monotonic() + EXIT_WITHIN_S
        # two *complete* checkpoints: a .pt is listed before its checksum sidecar is written,
        # and a kill between the two rightly sends the resume back to the one before
        while sum(sidecar(p).is_file() for p in list_checkpoints(run_dir)) < 2:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no second checkpoint in time"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    (run_dir / "checkpoint-0000009.pt.abcdef.tmp").write_bytes(b"a write killed half-way")
    config = tiny_config(small_shapes_root, {"run.checkpoint_every": 1, "run.num_workers": 2})
    resumed = new_trainer(config, run_dir)
    killed_at = resumed.step
    assert killed_at >= 2 and not list(run_dir.glob("*.tmp"))  # the stale temp file is gone
    new_trainer(tiny_config(small_shapes_root, {"optim.steps": killed_at + 2}), run_dir).fit()
    straight = tmp_path / "straight"
    new_trainer(tiny_config(small_shapes_root, {"optim.steps": killed_at + 2}), straight).fit()
    latest = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert latest["step"] == killed_at + 2
    assert_identical(
        trained_state(load_checkpoint(list_checkpoints(straight)[-1])), trained_state(latest)
    )
    steps = [r["step"] for r in _strict_records(run_dir / "stats.jsonl")]
    assert steps == list(range(1, killed_at + 3))  # one record per step, none repeated
    assert len(list_checkpoints(run_dir)) == 3  # keep_checkpoints


# ---------------------------------------------------------------------------- poison
class PoisonedBatch(torch.utils.data.Dataset):
    """The shapes set with NaN pixels in the images of `poisoned` (dataset indices)."""

    def __init__(self, dataset, poisoned: set[int]) -> None:
        self.dataset, self.poisoned = dataset, poisoned

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        if index in self.poisoned:
            item["image"] = torch.full_like(item["image"], math.nan)
        return item


def test_a_non_finite_step_is_skipped_counted_and_the_run_goes_on(
    shapes_root, tiny_config, new_trainer, tmp_path
):
    from training.data.coco import CocoCaptions

    config = tiny_config(shapes_root, {"optim.steps": 3, "run.checkpoint_every": 1})
    first = new_trainer(config, tmp_path / "probe").data.batches()
    second_batch = next(first), next(first)
    poisoned = set(second_batch[1]["index"].tolist())
    dataset = PoisonedBatch(CocoCaptions(shapes_root, "train", 32, seed=0), poisoned)
    trainer = new_trainer(config, tmp_path / "run", dataset=dataset)
    summary = trainer.fit()
    assert summary["step"] == 3 and summary["skipped_steps"] == 1
    assert summary["images"] == 4 * 8  # the skipped batch was seen, not trained on
    records = _strict_records(tmp_path / "run" / "stats.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records)
    assert float(next(iter(trainer.opt_g.state.values()))["step"]) == 3  # no G update skipped in


def test_poisoned_weights_stop_the_run_and_keep_the_last_good_checkpoint(
    shapes_root, tiny_config, new_trainer, tmp_path
):
    from training.faults import NonFiniteError

    run_dir = tmp_path / "run"
    new_trainer(tiny_config(shapes_root, {"optim.steps": 2}), run_dir).fit()
    good = list_checkpoints(run_dir)
    digests = {p.name: _digest(p) for p in good}
    trainer = new_trainer(
        tiny_config(shapes_root, {"optim.steps": 20, "run.max_bad_steps": 3}), run_dir
    )
    ema_before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    adam_steps = float(next(iter(trainer.opt_d.state.values()))["step"])
    with torch.no_grad():
        trainer.generator.stem.weight.view(-1)[0] = math.nan
    with pytest.raises(NonFiniteError) as error:
        trainer.fit()
    message = str(error.value)
    assert "3 steps in a row were non-finite" in message and "\n" not in message
    assert "checkpoint-0000002.pt is untouched" in message
    assert (trainer.step, trainer.skipped_steps) == (2, 3)
    assert {p.name: _digest(p) for p in list_checkpoints(run_dir)} == digests
    assert_identical(trainer.ema.state_dict(), ema_before)  # no EMA update
    assert float(next(iter(trainer.opt_d.state.values()))["step"]) == adam_steps  # no D step
    assert [r["step"] for r in _strict_records(run_dir / "stats.jsonl")] == [1, 2]


# ---------------------------------------------------------------------------- checkpoints
def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "bit-flipped":  # 512 bytes inside the tensor data, the zip structure intact
        middle = len(data) // 2
        data[middle : middle + 512] = bytes(b ^ 0xFF for b in data[middle : middle + 512])
        path.write_bytes(bytes(data))
    elif how == "no-checksum":
        sidecar(path).unlink()


@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory, shapes_root, tiny_config, new_trainer) -> Path:
    run_dir = tmp_path_factory.mktemp("three") / "run"
    new_trainer(
        tiny_config(shapes_root, {"optim.steps": 3, "run.checkpoint_every": 1}), run_dir
    ).fit()
    assert [p.name for p in list_checkpoints(run_dir)] == [
        f"checkpoint-000000{k}.pt" for k in (1, 2, 3)
    ]
    return run_dir


DAMAGE = {
    "truncated": "sha256 mismatch",
    "zeroed": "sha256 mismatch",
    "bit-flipped": "sha256 mismatch",
    "no-checksum": "checksum file checkpoint-0000003.pt.sha256 is missing",
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    how, three_checkpoints, tmp_path, shapes_root, tiny_config, new_trainer, capsys
):
    run_dir = Path(shutil.copytree(three_checkpoints, tmp_path / "run"))
    newest = run_dir / "checkpoint-0000003.pt"
    _damage(newest, how)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(newest)
    assert str(error.value).startswith(f"{newest}: ") and DAMAGE[how] in str(error.value)
    assert "\n" not in str(error.value)
    trainer = new_trainer(
        tiny_config(shapes_root, {"optim.steps": 3, "run.checkpoint_every": 1}), run_dir
    )
    assert trainer.step == 2 and trainer.resumed_from.name == "checkpoint-0000002.pt"
    err = capsys.readouterr().err
    assert (
        f"warning: {newest}: {DAMAGE[how]}" in err and "resuming from checkpoint-0000002.pt" in err
    )
    assert (run_dir / "checkpoint-0000003.pt.corrupt").exists()  # never picked again


def test_no_usable_checkpoint_is_one_line_naming_each_file(
    three_checkpoints, tmp_path, shapes_root, train_cli, capsys
):
    run_dir = Path(shutil.copytree(three_checkpoints, tmp_path / "run"))
    for path in list_checkpoints(run_dir):
        _damage(path, "zeroed")
    assert train_cli([str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"xmc-train: error: no usable checkpoint in {run_dir}"
    )
    assert all(f"checkpoint-000000{k}.pt: sha256 mismatch" in err for k in (1, 2, 3))


def test_a_checkpoint_alone_exports_without_its_run_directory(three_checkpoints, tmp_path):
    from models.pipeline import XMCGANPipeline
    from training.cli import export_main

    alone = tmp_path / "elsewhere"
    alone.mkdir()
    for path in (three_checkpoints / "checkpoint-0000003.pt",):
        shutil.copy(path, alone / path.name)
        shutil.copy(sidecar(path), alone / sidecar(path).name)
    assert export_main([str(alone / "checkpoint-0000003.pt"), str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["training"]["steps"] == 3 and config["training"]["images"] == 24
    XMCGANPipeline.from_pretrained(tmp_path / "out", device="cpu")


# ---------------------------------------------------------------------------- data position
def test_a_batch_size_change_on_resume_continues_at_the_next_unseen_image(
    small_shapes_root, tiny_config, new_trainer, tmp_path
):
    from training.data.stream import EpochSampler
    from training.distributed import DistInfo

    run_dir = tmp_path / "run"
    new_trainer(tiny_config(small_shapes_root, {"optim.steps": 1}), run_dir).fit()  # 8 images
    trainer = new_trainer(
        tiny_config(small_shapes_root, {"optim.steps": 3, "optim.batch_size": 4}), run_dir
    )
    batches = trainer.batches()
    seen = [next(batches)["index"].tolist() for _ in range(4)]
    order = EpochSampler(24, 8, 0, 0, 0, DistInfo()).share()
    assert seen == [order[8:12], order[12:16], order[16:20], order[20:24]]
    summary = new_trainer(
        tiny_config(small_shapes_root, {"optim.steps": 3, "optim.batch_size": 4}), run_dir
    ).fit()
    assert summary["images"] == 8 + 2 * 4  # counted in images, not steps x batch
    assert [r["images"] for r in _strict_records(run_dir / "stats.jsonl")] == [8, 12, 16]


# ---------------------------------------------------------------------------- bad records
def _with_caption(root: Path, caption: str, file_name: str | None = None) -> None:
    path = root / "annotations" / "captions_train.json"
    payload = json.loads(path.read_text())
    payload["annotations"][0]["caption"] = caption
    if file_name is not None:
        payload["images"][0]["file_name"] = file_name
    path.write_text(json.dumps(payload))


def test_empty_captions_are_skipped_and_counted_or_fatal_when_strict(data_copy):
    from training.data.base import DatasetError
    from training.data.coco import CocoCaptions

    _with_caption(data_copy, "   ")
    dataset = CocoCaptions(data_copy, "train", 32, skip_bad=True)
    assert dataset.empty_captions == 1 and len(dataset) == 24
    assert all(all(c for c in r.captions) for r in dataset.records)
    with pytest.raises(DatasetError, match="has an empty caption") as error:
        CocoCaptions(data_copy, "train", 32, skip_bad=False)
    assert "captions_train.json" in str(error.value)


@pytest.mark.parametrize("name", ["../val/000000000001.png", "/etc/passwd", "a/../../b.png"])
def test_a_file_name_leaving_the_data_root_is_refused(name, data_copy):
    from training.data.base import DatasetError
    from training.data.coco import CocoCaptions

    _with_caption(data_copy, "a red circle", file_name=name)
    with pytest.raises(DatasetError, match="leaves the image folder") as error:
        CocoCaptions(data_copy, "train", 32, skip_bad=True)
    assert repr(name) in str(error.value)


def test_an_error_from_a_worker_becomes_its_last_line():
    from training.faults import one_line

    error = ValueError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1\ntraining.data.coco.DatasetError: cannot decode '
        "image /d/0.png: bad"
    )
    assert one_line(error) == "cannot decode image /d/0.png: bad"
    assert one_line(OSError(28, "No space left on device")) == "[Errno 28] No space left on device"
