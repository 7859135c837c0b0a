"""The arms' figures as pictures (`python -m benchmarks.arms table --plot`, `pictures`): the
curves of their milestones, and the README's captions drawn by each model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.shapes.headline import README_CAPTIONS as PICTURE_CAPTIONS


def _panels(axes: Any) -> list[tuple[Any, str, list[tuple[str, str, str]]]]:
    """(axis, title, [(part, key, line style)]) of each of the four panels."""
    return [
        (axes[0, 0], "val: two-object whole caption", [("val", "two_object_whole", "-")]),
        (
            axes[0, 1],
            "held-out: two-object whole caption",
            [("test_heldout", "two_object_whole", "-")],
        ),
        (
            axes[1, 0],
            "G on val: binding (solid), relation given found (dashed)",
            [("val", "binding", "-"), ("val", "relation_given_found", "--")],
        ),
        (
            axes[1, 1],
            "D on real val: binding (solid), relation (dashed), shapes exchanged (dotted)",
            [
                ("d_probe", "binding", "-"),
                ("d_probe", "relation", "--"),
                ("d_probe", "shape_binding", ":"),
            ],
        ),
    ]


def _parent(rows: Sequence[dict], first: dict) -> dict | None:
    """The row a fork started from: the milestone at its `forked_at` of the arm it names
    (`forked_from`, the run folder its state was saved from); else (rows scored before that was
    kept, or an arm scored under another name) of an arm that is not a fork, with the same
    caption paths; None for an arm from the bundle (or an unscored start)."""
    if "forked_at" not in first:
        return None
    at = [r for r in rows if r["images"] == first["forked_at"]]
    named = [r for r in at if r["arm"] == first.get("forked_from")]
    same_paths = [
        r
        for r in at
        if "forked_at" not in r and r.get("caption_paths") == first.get("caption_paths")
    ]
    return next(iter(named or same_paths), None)


def plot(rows: Sequence[dict], path: Path) -> None:
    """Four panels: the two-object whole caption on val and held-out, G's two parts of it
    (binding, relation given found; val) and what the arm's D knows of the same on real
    scenes. An arm from the bundle starts its curve at the bundle's figures; a fork (a row
    with `forked_at`) at the milestone it started from."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bundle = next((r for r in rows if r["arm"] == "bundle"), None)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = _panels(axes)
    arms = [arm for arm in dict.fromkeys(r["arm"] for r in rows) if arm != "bundle"]
    for n, arm in enumerate(arms):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["images"])
        parent = _parent(rows, mine[0])
        for axis, _, lines in panels:
            for part, key, style in lines:
                if parent is not None:
                    start = [parent]
                else:
                    start = [bundle] if bundle and part != "d_probe" else []
                points = [
                    (r["images"] / 1000, r[part][key])
                    for r in start + mine
                    if r.get(part, {}).get(key) is not None
                ]
                xs, ys = zip(*points, strict=True) if points else ((), ())
                label = arm if style == "-" else None
                axis.plot(xs, ys, style, marker="o", color=f"C{n}", label=label)
    for axis, title, lines in panels:
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
        if bundle and lines[0][0] != "d_probe":
            for part, key, style in lines:
                axis.axhline(bundle[part][key], color="grey", linestyle=style, linewidth=0.8)
    axes[1, 1].axhline(0.5, color="grey", linewidth=0.8)  # chance for D's pairwise probe
    for axis in axes[1]:
        axis.set_xlabel("images since the bundle (thousands); grey: the bundle / chance")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def pictures(models: Sequence[tuple[str, Path]], out: Path, per_caption: int = 8) -> None:
    """One row per model and caption: its label, then `per_caption` images (seeds 100 c + k
    for caption c, the same for every model), shown at four times their size."""
    from models import XMCGANPipeline
    from models.images import labelled_rows

    rows = []
    for name, directory in models:
        pipe = XMCGANPipeline.from_pretrained(directory, device="cpu")
        for c, caption in enumerate(PICTURE_CAPTIONS):
            images = pipe([caption], seed=100 * c, num_images_per_caption=per_caption)
            rows.append((f"{name}: {caption}", images))
    grid = labelled_rows(rows, label_width=380)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
