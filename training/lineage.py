"""What an exported generator has seen, through the runs it started from: images and wall hours.

A run that starts G from an earlier export (`run.init_generator`) adds its own images and hours
to those the export records (`images_total`, `wall_hours_total` in its config.json's
"training"), so a bundle or an arm's saved state carries its whole history, however many runs
and forks led to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def wall_seconds(stats_path: str | Path, up_to_images: int | None = None) -> tuple[float, int]:
    """Training wall time summed from a run's stats.jsonl (images per interval / img/s), up to
    the record at `up_to_images` (a checkpoint's images seen) when given; and the images it
    covers."""
    seconds, previous = 0.0, 0
    for line in Path(stats_path).read_text().splitlines():
        record = json.loads(line)
        if up_to_images is not None and record["images"] > up_to_images:
            break
        seconds += (record["images"] - previous) / record["img_per_s"]
        previous = record["images"]
    return seconds, previous


def prior_training(train: dict[str, Any], prior_hours: float = 0.0) -> dict[str, Any]:
    """What a run's G had seen before it (`run.init_generator`, in the dotted names of
    `training.config_io.dotted`): the images and wall hours that the export it started from
    records, or its own run's images and `prior_hours` where it records no totals. Zero for a
    run from scratch."""
    if not train.get("run.init_generator"):
        return {"images": 0, "hours": 0.0}
    recorded = json.loads((Path(train["run.init_generator"]) / "config.json").read_text())[
        "training"
    ]
    images = recorded.get("images_total", recorded["images"])
    return {"images": images, "hours": recorded.get("wall_hours_total", prior_hours)}


def record_totals(
    artifact: str | Path, train: dict[str, Any], stats_path: str | Path, prior_hours: float = 0.0
) -> dict[str, Any]:
    """Write `images_total` and `wall_hours_total` into an export's config.json (its own images,
    from the export, plus what its run started from), and return them."""
    path = Path(artifact) / "config.json"
    config = json.loads(path.read_text())
    images = int(config["training"]["images"])
    prior = prior_training(train, prior_hours)
    seconds = wall_seconds(stats_path, up_to_images=images)[0]
    config["training"]["images_total"] = images + prior["images"]
    config["training"]["wall_hours_total"] = round(seconds / 3600 + prior["hours"], 3)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return {"prior": prior, "seconds": seconds, **config["training"]}
