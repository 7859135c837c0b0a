"""benchmarks.model_hosts: both places the model can run are served and timed."""

from __future__ import annotations

import re

import torch


def test_every_host_is_served_and_timed(tiny_artifact, capsys, monkeypatch):
    from benchmarks.model_hosts import HOSTS, main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XMC_WARMUP", "false")  # the servers inherit it
    threads = torch.get_num_threads()
    try:
        argv = ["--model", str(tiny_artifact), "--clients", "2", "--seconds", "0.3"]
        assert main([*argv, "--rounds", "1", "--max-batch-images", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = re.findall(r"^  (.+?)\s+([\d.]+)  \(([\d.]+)\)$", out, re.M)
    assert [name for name, _, _ in rows] == [*HOSTS, "in-process"]
    assert all(float(rate) > 0 for _, rate, _ in rows)
    assert rows[-1][2] == "1.00"
