"""xmc-train in a child process, for the tests that signal, kill or time a real run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def train_process(args: list[str], prelude: str = "") -> subprocess.Popen:
    """xmc-train in a fresh process (this tree first on the path), `prelude` run before it."""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    code = prelude + "\nfrom training.cli import train_main\nraise SystemExit(train_main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
