"""The XMC-GAN paper's loss ablation (Table 3) in miniature, on the shapes benchmark.

Every row trains the same preset for the same number of steps from the same seed, is exported,
and is scored with the faithfulness scorer on val and test_heldout. Runs resume (from a
checkpoint every --checkpoint-every steps), so the script can be interrupted and started again.
`ablation.json` in --out keeps every row scored so far, from this call and earlier ones (a row
found there is skipped; --rescore scores it again without training it again), and
`ablation.md` tables them. `--merge` tables the seeds of one budget (each seed's `ablation.json`)
as mean and spread per row.

    python -m benchmarks.ablation --data data/shapes32 --out runs/ablation --steps 300
    python -m benchmarks.ablation --merge runs/ablation/seed*/ablation.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

ALL = ("sent", "word", "img")
# each row's changes, as xmc-train --set names them
ROWS: dict[str, dict] = {
    "no contrastive loss": {"objective.losses": ()},
    "+ L_sent": {"objective.losses": ("sent",)},
    "+ L_word": {"objective.losses": ("word",)},
    "+ L_img": {"objective.losses": ("img",)},
    "all three (XMC-GAN)": {"objective.losses": ALL},
    "all three + dual contrastive adv.": {
        "objective.losses": ALL,
        "objective.adversarial": "dual-contrastive",
    },
    "all three + InfoMax": {"objective.losses": ALL, "discriminator.infomax": True},
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_row(name: str, overrides: dict, args: argparse.Namespace) -> dict:
    from models import XMCGANPipeline
    from training.cli import export_run
    from training.config_io import apply_overrides, train_config
    from training.shapes.faithfulness import faithfulness
    from training.trainer import Trainer

    run_dir = args.out / slug(name)
    values = {
        "preset": args.preset,
        "data.source": str(args.data),
        "optim.steps": args.steps,
        "optim.batch_size": args.batch_size,
        "run.seed": args.seed,
        "run.num_workers": 0,
        "run.sample_every": args.steps,
        "run.checkpoint_every": min(args.checkpoint_every, args.steps),
        "run.log_every": max(args.steps // 10, 1),
    }
    config = train_config(apply_overrides({}, {**values, **args.overrides, **overrides}))
    start = time.perf_counter()
    trainer = Trainer(config, run_dir, progress=not args.quiet)
    if trainer.step < config.optim.steps and trainer.fit()["interrupted"]:
        raise SystemExit(f"interrupted during {name!r}; run the same command again to resume")
    seconds = time.perf_counter() - start
    export = export_run(run_dir, run_dir / "export", model_id=slug(name))
    pipe = XMCGANPipeline.from_pretrained(export, device="cpu")
    scores = {}
    for split in ("val", "test_heldout"):
        result = faithfulness(
            pipe,
            args.data,
            split,
            num=args.num,
            seed=args.seed,
            reference=split not in args.reference_done,
        )
        args.reference_done.setdefault(
            split, {k: result[k] for k in ("real", "untrained") if k in result}
        )
        scores[split] = result["generated"]
    return {
        "row": name,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "train_seconds_this_call": round(seconds, 1),
        "scores": scores,
    }


def earlier_results(path: Path, args: argparse.Namespace) -> dict[str, dict]:
    """The rows an earlier call scored into `path` under the same budget, by row name."""
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    if summary["budget"] != budget(args):
        raise SystemExit(
            f"{path} holds rows of another budget ({summary['budget']}); use another --out"
        )
    args.reference_done.update(summary["reference"])
    return {result["row"]: result for result in summary["results"]}


def budget(args: argparse.Namespace) -> str:
    sets = "".join(f", {key}={value}" for key, value in sorted(args.overrides.items()))
    return (
        f"preset `{args.preset}`{sets}, {args.steps} steps of batch {args.batch_size} "
        f"({args.steps * args.batch_size} images), seed {args.seed}, "
        f"{args.num} scored images per split"
    )


def table(results: list[dict], reference: dict, args: argparse.Namespace) -> str:
    val_ceiling = reference["val"]["real"]["mean"]
    held_ceiling = reference["test_heldout"]["real"]["mean"]
    lines = [
        "| row | val mean | val / ceiling | test_heldout mean | held-out / ceiling | "
        "background | colour | shape | relation (val) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(x):
        return "-" if x is None else f"{x:.3f}"

    for r in results:
        v, h = r["scores"]["val"], r["scores"]["test_heldout"]
        lines.append(
            f"| {r['row']} | {v['mean']:.3f} | {v['mean'] / val_ceiling:.2f} | "
            f"{h['mean']:.3f} | {h['mean'] / held_ceiling:.2f} | "
            + " | ".join(cell(v.get(a)) for a in ("background", "color", "shape", "relation"))
            + " |"
        )
    for label, key in (("real images (ceiling)", "real"), ("untrained G (floor)", "untrained")):
        v, h = reference["val"][key], reference["test_heldout"][key]
        lines.append(
            f"| {label} | {v['mean']:.3f} | {v['mean'] / val_ceiling:.2f} | "
            f"{h['mean']:.3f} | {h['mean'] / held_ceiling:.2f} | "
            + " | ".join(cell(v.get(a)) for a in ("background", "color", "shape", "relation"))
            + " |"
        )
    return budget(args) + "\n\n" + "\n".join(lines)


def _unseeded(budget_text: str) -> str:
    return re.sub(r", seed \d+,", ",", budget_text)


def seeds_table(summaries: list[dict]) -> str:
    """The rows of several seeds' `ablation.json` at one budget: per row the mean over the seeds
    that scored it, +/- half their range. The change from hinge only is paired: each seed's row
    minus the same seed's hinge-only row, then the mean +/- half range of those differences."""
    budgets = {_unseeded(s["budget"]) for s in summaries}
    if len(budgets) != 1:
        raise ValueError(f"the files hold different budgets: {sorted(budgets)}")
    reference = summaries[0]["reference"]
    ceiling = {split: reference[split]["real"]["mean"] for split in ("val", "test_heldout")}
    by_row: dict[str, dict[int, dict]] = {}  # row -> {index of the seed's file: scores}
    for seed, summary in enumerate(summaries):
        for result in summary["results"]:
            by_row.setdefault(result["row"], {})[seed] = result["scores"]

    def spread(values: list[float]) -> tuple[float, float]:
        return sum(values) / len(values), (max(values) - min(values)) / 2

    def stat(scores: dict, split: str, key: str, scale: float = 1.0) -> tuple[float, float]:
        return spread(
            [s[split][key] / scale for s in scores.values() if s[split].get(key) is not None]
        )

    def cell(mean_spread: tuple[float, float], sign: str = "") -> str:
        return f"{mean_spread[0]:{sign}.3f} ± {mean_spread[1]:.3f}"

    def change(scores: dict) -> str:
        base = by_row.get("no contrastive loss", {})
        diffs = [
            (scores[s]["val"]["mean"] - base[s]["val"]["mean"]) / ceiling["val"]
            for s in scores
            if s in base
        ]
        return cell(spread(diffs), "+") if diffs else "-"

    lines = [
        "| row | seeds | val / ceiling | held-out / ceiling | change from hinge only (val, "
        "paired by seed) | background | colour | shape | relation (val) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [name for name in ROWS if name in by_row]:
        scores = by_row[row]
        attributes = (cell(stat(scores, "val", a)) for a in ("background", "color", "shape"))
        lines.append(
            f"| {row} | {len(scores)} | {cell(stat(scores, 'val', 'mean', ceiling['val']))} | "
            f"{cell(stat(scores, 'test_heldout', 'mean', ceiling['test_heldout']))} | "
            f"{change(scores)} | "
            + " | ".join([*attributes, cell(stat(scores, "val", "relation"))])
            + " |"
        )
    floor = {split: reference[split]["untrained"]["mean"] / ceiling[split] for split in ceiling}
    lines.append(
        f"| untrained G (floor) | | {floor['val']:.3f} | {floor['test_heldout']:.3f} | | | | | |"
    )
    return budgets.pop() + "\n\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__)
    p.add_argument("--data", type=Path, help="shapes benchmark root (required unless --merge)")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--preset", default="shapes-32")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num", type=int, default=500, help="images scored per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default="", help="comma-separated row numbers (1-based; default all)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field for every row (as xmc-train --set), e.g. optim.lr_g=2e-4",
    )
    p.add_argument("--rescore", action="store_true", help="score rows found in ablation.json again")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="only print the table of these seeds' ablation.json files (one budget)",
    )
    args = p.parse_args(argv)
    if args.merge:
        try:
            print(seeds_table([json.loads(path.read_text()) for path in args.merge]))
        except (OSError, ValueError, KeyError) as error:
            p.error(f"--merge: {error}")
        return 0
    if args.data is None:
        p.error("--data is required")
    from training.config_io import parse_overrides

    try:
        args.overrides = parse_overrides(args.set)
    except ValueError as error:
        p.error(str(error))
    args.reference_done = {}
    names = list(ROWS)
    if args.rows:
        names = [names[int(i) - 1] for i in args.rows.split(",")]
    run_rows(names, args)
    return 0


def run_rows(names: list[str], args: argparse.Namespace) -> None:
    """Train and score each row not in --out's ablation.json yet; rewrite it after each row."""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ablation.json"
    scored = earlier_results(path, args)
    for name in names:
        if name in scored and not args.rescore:
            print(f"== {name}: scored already ({path})", flush=True)
            continue
        print(f"== {name}", flush=True)
        scored[name] = run_row(name, ROWS[name], args)
        summary = {
            "budget": budget(args),
            "args": {k: str(v) for k, v in vars(args).items() if k != "reference_done"},
            "results": [scored[row] for row in ROWS if row in scored],
            "reference": args.reference_done,
        }
        path.write_text(json.dumps(summary, indent=2))
    results = [scored[row] for row in ROWS if row in scored]
    text = table(results, args.reference_done, args)
    (args.out / "ablation.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
