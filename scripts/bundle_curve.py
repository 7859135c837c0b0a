"""The bundled model's learning curve, from the bundles committed to this repository.

    python scripts/bundle_curve.py [--plot docs/images/bundle_curve.png] [--bundle DIR]

Every commit that changed the bundle's `scores.json` is one point: its `config.json` says how
many training images the weights had seen (`images_total`, else `images` for a run that started
from scratch) and the training wall time when recorded; its `scores.json` gives the
faithfulness on 1000 images of val and test_heldout (`xmc-eval faithfulness`). Prints a table
(oldest first) and, with `--plot`, draws val and held-out per attribute against images seen,
with the issue's targets as dashed lines. Needs git and this repository's history; matplotlib
for `--plot`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ATTRIBUTES = ("mean", "background", "color", "shape", "relation")
TARGETS = {("val", "mean"): 0.90, ("test_heldout", "mean"): 0.75, ("val", "relation"): 0.80}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ("git", "-C", str(repo), *args), check=True, capture_output=True, text=True
    ).stdout


def bundle_points(bundle: str, repo: Path = Path(".")) -> list[dict]:
    """One dict per commit of `bundle`/scores.json in the git repository `repo`, oldest first."""
    points = []
    for line in git(
        repo, "log", "--reverse", "--format=%h %ad", "--date=short", "--", f"{bundle}/scores.json"
    ).splitlines():
        commit, date = line.split()
        try:
            config = json.loads(git(repo, "show", f"{commit}:{bundle}/config.json"))
            scores = json.loads(git(repo, "show", f"{commit}:{bundle}/scores.json"))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            continue  # the bundle was removed or half-written in this commit
        training = config.get("training", {})
        if "images" not in training or "val" not in scores:
            continue
        points.append(
            {
                "commit": commit,
                "date": date,
                "preset": training.get("preset", "?"),
                "images": training.get("images_total", training["images"]),
                "wall_hours": training.get("wall_hours_total"),
                **{
                    split: {a: scores[split]["generated"][a] for a in ATTRIBUTES}
                    for split in ("val", "test_heldout")
                    if split in scores
                },
            }
        )
    return points


def print_table(points: list[dict]) -> None:
    head = "| commit | date | preset | images | wall h | split | " + " | ".join(ATTRIBUTES) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for p in points:
        wall = f"{p['wall_hours']:.2f}" if p["wall_hours"] is not None else "-"
        for split in ("val", "test_heldout"):
            if split in p:
                cells = " | ".join(f"{p[split][a]:.3f}" for a in ATTRIBUTES)
                print(
                    f"| {p['commit']} | {p['date']} | {p['preset']} | {p['images']:,} | {wall} "
                    f"| {split} | {cells} |"
                )


def plot(points: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, split in zip(axes, ("val", "test_heldout"), strict=True):
        for preset in sorted({p["preset"] for p in points}):
            series = [p for p in points if p["preset"] == preset and split in p]
            x = [p["images"] / 1000 for p in series]
            for colour, attribute in enumerate(ATTRIBUTES):
                ax.plot(
                    x,
                    [p[split][attribute] for p in series],
                    marker="o",
                    color=f"C{colour}",
                    linewidth=2.5 if attribute == "mean" else 1.2,
                    linestyle="-" if preset.endswith("cpu") else ":",
                    label=f"{attribute} ({preset})",
                )
        for (target_split, attribute), value in TARGETS.items():
            if target_split == split:
                ax.axhline(value, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate(
                    f"target {attribute} {value}",
                    (0, value),
                    fontsize=7,
                    xytext=(2, 2),
                    textcoords="offset points",
                )
        ax.set_title(f"bundled model, {split} (1000 images)")
        ax.set_xlabel("training images seen (thousands)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of the real-image ceiling")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="models/bundled/default")
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args()
    points = bundle_points(args.bundle)
    if not points:
        raise SystemExit(f"no committed scores.json with a training record under {args.bundle}")
    print_table(points)
    if args.plot:
        plot(points, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
