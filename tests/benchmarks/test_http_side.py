"""The HTTP-side benchmark (benchmarks/http_side.py): its CPU counters, its stand-in model, and
one small run end to end against the real service."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import http_side
from benchmarks.standin_server import StandInPipeline


def test_the_process_tree_counts_a_childs_cpu() -> None:
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    parent = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -c '{spin}'; sleep 5"],
    )
    try:
        time.sleep(0.2)
        first = http_side.process_tree_cpu(parent.pid)
        assert parent.pid in first and len(first) == 2  # the shell and its python child
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = http_side.process_tree_cpu(parent.pid)
            if sum(seconds for _, seconds in tree.values()) >= 0.39:
                break
            time.sleep(0.1)
        child_seconds = [s for pid, (_, s) in tree.items() if pid != parent.pid]
        assert child_seconds and child_seconds[0] >= 0.39
    finally:
        parent.kill()
        parent.wait()


def test_the_stand_in_answers_precomputed_uint8_pixels_per_seed() -> None:
    model = StandInPipeline(resolution=16, batch_ms=0)
    feats = model.encode_text(["a", "b", "c"])
    first = model.generate(feats, [1, 2, 3])
    again = model.generate(model.encode_text(["x"]), [2])
    assert first.dtype.is_floating_point is False and tuple(first.shape) == (3, 3, 16, 16)
    assert np.array_equal(first[1].numpy(), again[0].numpy())
    assert first.float().std() > 0


@pytest.mark.slow
def test_one_small_run_measures_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--seconds", "1", "--clients", "4", "--images", "1,2", "--resolutions", "16"]
    assert http_side.main([*argv, "--gpu-rates", "1000", "--gpu-cores", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("this tree")]
    assert len(rows) == 2
    for row in rows:
        images_per_s, cpu_per_image = float(row.split()[8]), float(row.split()[12])
        assert images_per_s > 0 and cpu_per_image > 0
