"""scripts/bundle_curve.py: one point per committed bundle, read back from the git history."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _commit(repo: Path, bundle: Path, training: dict | None, val: float | None) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps({"training": training} if training else {}))
    generated = dict.fromkeys(("mean", "background", "color", "shape", "relation"), val)
    scores = {"val": {"generated": generated}, "test_heldout": {"generated": generated}}
    (bundle / "scores.json").write_text(json.dumps(scores if val is not None else {}))
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b"],
        check=True,
    )


def test_every_scored_commit_is_a_point_in_order(tmp_path, load_script) -> None:
    curve = load_script("bundle_curve")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    bundle = tmp_path / "models/bundled/default"
    _commit(tmp_path, bundle, {"images": 1000, "preset": "p"}, 0.3)
    _commit(tmp_path, bundle, None, None)  # a half-written bundle: no training record
    _commit(
        tmp_path,
        bundle,
        {"images": 500, "images_total": 2500, "wall_hours_total": 1.5, "preset": "p"},
        0.6,
    )

    points = curve.bundle_points("models/bundled/default", tmp_path)

    assert [p["images"] for p in points] == [1000, 2500]  # images_total when there is one
    assert [p["wall_hours"] for p in points] == [None, 1.5]
    assert [p["val"]["mean"] for p in points] == [0.3, 0.6]
    assert points[1]["test_heldout"]["relation"] == 0.6
