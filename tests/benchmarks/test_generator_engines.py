"""benchmarks.generator_engines: every engine is timed at both thread counts, against the plain
generator at 2 threads."""

from __future__ import annotations

import re

import torch


def test_every_engine_is_timed_at_one_and_two_threads(tiny_artifact, capsys):
    from benchmarks.generator_engines import main

    threads = torch.get_num_threads()
    try:
        assert main(["--model", str(tiny_artifact), "--batch", "4", "--seconds", "0.05"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.search(r"\([\d.]+x\)", line)]
    assert [row.split("  ")[0] for row in rows] == [
        "plain PyTorch generator",
        "folded + channels_last, PyTorch",
        "folded, ONNX Runtime",
    ]
    for row in rows:
        rates = [float(rate) for rate in re.findall(r"([\d.]+) \([\d.]+x\)", row)]
        assert len(rates) == 2 and min(rates) > 0  # 1 and 2 threads
    assert rows[0].endswith("(1.00x)")  # the plain generator at 2 threads is the base


def test_another_model_is_timed_in_the_same_run(tiny_artifact, capsys):
    from benchmarks.generator_engines import main

    threads = torch.get_num_threads()
    try:
        argv = ["--model", str(tiny_artifact), "--against", str(tiny_artifact)]
        assert main([*argv, "--batch", "2", "--seconds", "0.05"]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in capsys.readouterr().out.splitlines() if "(" in line and "x)" in line]
    assert rows[-1].startswith("--against's, ONNX Runtime")
    assert len(re.findall(r"([\d.]+) \([\d.]+x\)", rows[-1])) == 2
