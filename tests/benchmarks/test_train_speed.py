"""benchmarks.train_speed: the quick GEMM section runs and bad overrides are one-line errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_process_state(monkeypatch) -> Iterator[None]:
    """main() sets CUDA_VISIBLE_DEVICES, HF_HUB_OFFLINE and the torch thread count."""
    for name in ("CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_gemm_section_prints_a_measured_peak(capsys):
    from benchmarks.train_speed import main

    assert main(["--only", "gemm", "--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"GEMM peak \(float32 mm 2048x2048, best of 3\): ([\d.]+) GFLOP/s", out)
    assert match and float(match.group(1)) > 0.1
    assert "torch threads 1" in out


def test_bad_override_is_a_one_line_error(capsys):
    from benchmarks.train_speed import main

    assert main(["--only", "gemm", "--set", "learning_rate=1"]) == 2
    out = capsys.readouterr().out
    assert (
        out.startswith("benchmarks.train_speed: error: --set 'learning_rate=1'")
        and out.count("\n") == 1
    )


def test_table_aligns_columns():
    from benchmarks.train_speed import _table

    lines = _table(["name", "s"], [["a", "1.00"], ["longer", "12.50"]]).splitlines()
    assert lines == ["name        s", "------  -----", "a        1.00", "longer  12.50"]


def test_a_case_trains_with_an_injected_text_encoder(tmp_path):
    """make_trainer hands the Trainer its encoder (no module is patched) and a counted step runs."""
    from benchmarks.train_speed import Case, count_step_flops, make_trainer
    from training.shapes.scenes import make_benchmark

    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=16, n_val=2, n_test_heldout=0, progress=False)
    torch.set_num_threads(1)
    notes: list[str] = []
    trainer = make_trainer(Case("tiny", "tiny", 8, 1), data, tmp_path / "runs", {}, notes)
    step_flops, text_flops = count_step_flops(trainer, next(trainer.batches()))
    assert step_flops > text_flops > 0 and trainer.step == 1 and notes == []
