"""Score training arms milestone by milestone on the two-object figures (issue: two objects).

Each arm is a directory of training checkpoints (a run directory, or the milestone copies that
`scripts/two_object_arms.sh` keeps). Every checkpoint not yet in the results file is exported
(the EMA generator, or the live one with --weights generator), scored with `xmc-eval
faithfulness` on val and test_heldout (`--num` images each; the two-object whole-caption
accuracy, binding, relation given found, the named mean), and probed with the headline caption
over 16 seeds and the relation flip (`benchmarks.flip_probe`). Results accumulate in one JSON
file, so the script can be run again as the arms go on; `table` prints them and draws the curve.

    python -m benchmarks.arms score --data DATA --out arms.json head=RUN/head-milestones \\
        words=RUN/words-milestones control=RUN/control-milestones [--bundle]
    python -m benchmarks.arms table arms.json [--plot curve.png]
    python -m benchmarks.arms save-state RUN/checkpoint-N.pt OUT   # what a restart needs
    python -m benchmarks.arms pictures OUT.png bundle=models/bundled/default words=STATE/generator

`pictures` draws the README's captions (`arms_drawing.PICTURE_CAPTIONS`) with each exported
model, the same seeds for every model, so the figures' failures can be seen (the drawing lives
in `arms_drawing.py`). `save-state` keeps an arm's EMA generator (an export) and its D (a
Discriminator artifact) with the images they have seen, small enough to commit:
`scripts/two_object_arms.sh` continues from them (INIT_G, INIT_D) on a new machine, with fresh
optimisers, or forks an arm from them into a new one.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPLITS = ("val", "test_heldout")
BUNDLE = "models/bundled/default"


def _figures(generated: dict[str, Any]) -> dict[str, Any]:
    """The few figures an arm is picked by, from a faithfulness result's "generated"."""
    two = generated["two_objects"]
    return {
        "mean": generated["mean"],
        "named_mean": generated["named"]["mean"],
        "whole_caption": generated["whole_caption"],
        "one_object_whole": generated["one_object"]["whole_caption"],
        "one_object_named": generated["one_object"]["named"],
        # shape by object size and what was drawn instead (`figures.shape_errors`)
        "shapes": generated["shapes"],
        "two_object_whole": two["whole_caption"],
        "binding": two["binding"],
        "both_colours": two["both_colors"],
        "both_shapes": two["both_shapes"],
        "relation_given_found": two["relation_given_found"],
        **{name: generated[name] for name in ("background", "color", "shape", "relation")},
    }


def score_model(
    model_dir: str | Path,
    data: str | Path,
    num: int,
    probe_num: int,
    cache_dir: str | Path | None = None,
) -> dict:
    """Every figure of one exported model (see the module docstring)."""
    from benchmarks.flip_probe import probe
    from models import XMCGANPipeline
    from training.shapes.classifier import load_or_train
    from training.shapes.faithfulness import faithfulness

    pipeline = XMCGANPipeline.from_pretrained(model_dir, device="cpu")
    scores: dict[str, Any] = {}
    for split in SPLITS:
        result = faithfulness(pipeline, data, split, num=num, reference=False, cache_dir=cache_dir)
        scores[split] = _figures(result["generated"])
    classifier = load_or_train(pipeline.resolution, cache_dir=cache_dir, data_root=data)
    flip = probe(pipeline, classifier, num=probe_num, split="val")
    scores["relation_flip_follows"] = flip["relation_flip"]["follows"]
    scores["colour_swap_follows"] = flip["colour_swap"]["follows"]
    scores["headline_right"] = flip["headline"]["right"]
    return scores


def d_probe(state: dict[str, Any], data: str | Path, num: int = 1000) -> dict[str, float]:
    """What the arm's D tells apart on real val two-object scenes (`benchmarks.caption_probe`):
    the share whose true caption outscores its relation-reversed and its colour-exchanged
    edit, by D's sentence score. With G's own figures it says which side limits: a D at
    chance cannot teach G the relation; a D that knows it while G's drawings do not follow
    puts the limit in G."""
    from benchmarks.caption_probe import probe_state

    edits = probe_state(state, data, "val", num=num)["edits"]
    shapes = edits.get("shape_binding")  # none when no scene allows it (tiny splits)
    return {
        "relation": edits["relation"]["trained"]["sentence"],
        "binding": edits["binding"]["trained"]["sentence"],
        "shape_binding": shapes["trained"]["sentence"] if shapes else None,
        "relation_word": edits["relation"]["trained"]["word"],
        "binding_word": edits["binding"]["trained"]["word"],
    }


def checkpoints(directory: Path) -> list[Path]:
    return sorted(directory.glob("checkpoint-*.pt"))


def score_arms(args: argparse.Namespace) -> list[dict]:
    from training.checkpoint import load_checkpoint
    from training.cli import export_state

    rows: list[dict] = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(row["arm"], row["step"], row.get("weights", "ema")) for row in rows}

    def save(row: dict) -> None:
        rows.append(row)
        _write(rows, args.out)
        print(format_table([row]).splitlines()[-1], flush=True)

    if args.bundle and ("bundle", 0, "ema") not in done:
        save(
            {
                "arm": "bundle",
                "step": 0,
                "images": 0,
                **score_model(BUNDLE, args.data, args.num, args.probe_num, args.cache_dir),
            }
        )
    for arm, directory in args.arms:
        for path in checkpoints(directory):
            step = int(re.findall(r"\d+", path.stem)[-1])
            if (arm, step, args.weights) in done:
                _add_d_probe(rows, arm, step, path, args)
                continue
            state = load_checkpoint(path)  # read once: exported, then its D probed
            start = start_record(state["config"])  # {} for a run from the bundle
            forked_at = int(start.get("images", 0))
            images = forked_at + int(state["images_seen"])
            with tempfile.TemporaryDirectory() as tmp:
                export_state(state, tmp, f"{arm}-{step}", args.weights, source_name=path.name)
                scores = score_model(tmp, args.data, args.num, args.probe_num, args.cache_dir)
            row = {"arm": arm, "step": step, "images": images, "weights": args.weights}
            if forked_at:
                row["forked_at"] = forked_at
                if start.get("arm"):
                    row["forked_from"] = start["arm"]
            save(
                {
                    **row,
                    **scores,
                    "d_probe": d_probe(state, args.data),
                    "caption_paths": state["config"]["generator"].get("caption_paths", []),
                }
            )
    return rows


def start_images(config: dict[str, Any]) -> int:
    """Images the run's starting G had already seen: a fork of an arm starts from a state that
    `save-state` wrote (run.init_generator = STATE/generator, beside STATE/state.json), and its
    rows count images from the bundle, as its parent's do; 0 for a run from the bundle."""
    return int(start_record(config).get("images", 0))


def start_record(config: dict[str, Any]) -> dict[str, Any]:
    """The `state.json` of the saved state a run's G started from ({} for none): the images
    seen from the bundle, and the arm it was saved from (`arm`, in states saved since the
    fifth session), whose row a fork's curve starts at."""
    from training.config_io import upgrade

    start = upgrade(config)["train"]["run"].get("init_generator") or ""
    record = Path(start).parent / "state.json"
    return json.loads(record.read_text()) if start and record.is_file() else {}


def _add_d_probe(rows: list[dict], arm: str, step: int, path: Path, args: Any) -> None:
    """Probe the D of a row scored before `d_probe` (or its shape_binding edit) existed, and
    save the file again."""
    from training.checkpoint import load_checkpoint

    for row in rows:
        if (row["arm"], row["step"]) == (arm, step) and "shape_binding" not in row.get(
            "d_probe", {}
        ):
            row["d_probe"] = d_probe(load_checkpoint(path), args.data)
            _write(rows, args.out)


def _write(rows: list[dict], out: Path) -> None:
    """The results file, rewritten whole after each new figure (a stopped run loses none)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"  # None: no image had that case


def save_state(checkpoint: Path, out: Path, stats: Path | None = None) -> dict:
    """OUT/generator (the EMA, exported), OUT/discriminator and OUT/state.json. With the run's
    stats.jsonl (beside the checkpoint, or `stats`), the generator's config.json also records
    the images and wall hours of its whole history (`training.lineage`), which a bundle made
    from a run that starts there carries on."""
    from models.config import DiscriminatorConfig, config_from_dict
    from models.discriminator import Discriminator
    from training.checkpoint import load_checkpoint
    from training.cli import export_state
    from training.config_io import dotted, upgrade
    from training.lineage import record_totals

    state = load_checkpoint(checkpoint)
    export_state(state, out / "generator", checkpoint.parent.name, "ema", checkpoint.name)
    config = config_from_dict(DiscriminatorConfig, state["config"]["discriminator"])
    discriminator = Discriminator(config)
    discriminator.load_state_dict(state["discriminator"])
    discriminator.save_pretrained(out / "discriminator")
    forked_at = start_images(state["config"])  # a fork's images count from the bundle
    images = forked_at + int(state["images_seen"])
    arm = checkpoint.parent.name.removesuffix("-milestones")  # RUN/ or RUN-milestones/
    record = {"arm": arm, "checkpoint": checkpoint.name, "step": state["step"], "images": images}
    stats = stats or checkpoint.parent / "stats.jsonl"
    if stats.is_file():
        train = dotted(upgrade(state["config"])["train"])
        totals = record_totals(out / "generator", train, stats)
        record |= {k: totals[k] for k in ("images_total", "wall_hours_total")}
    (out / "state.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def format_table(rows: Sequence[dict]) -> str:
    head = (
        "| arm | images | val: 2-obj whole | binding | both shapes | rel. given found | "
        "named mean | held-out: 2-obj whole | binding | named mean | 1-obj whole (val) | "
        "shape (val) | flip follows | headline /16 | D on real: relation | binding | "
        "shapes exchanged |"
    )
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        v, h = r["val"], r["test_heldout"]
        figures = [
            v["two_object_whole"],
            v["binding"],
            v.get("both_shapes"),  # rows scored before it was kept have none
            v["relation_given_found"],
            v["named_mean"],
            h["two_object_whole"],
            h["binding"],
            h["named_mean"],
            v["one_object_whole"],
            v["shape"],
            r["relation_flip_follows"],
        ]
        cells = " | ".join(_f(x) for x in figures)
        probe = r.get("d_probe", {})  # none for the bundle, whose D is not kept
        d_cells = " | ".join(_f(probe.get(k)) for k in ("relation", "binding", "shape_binding"))
        lines.append(
            f"| {r['arm']} | {r['images']:,} | {cells} | {r['headline_right']} | {d_cells} |"
        )
    return "\n".join(lines)


def _model(text: str) -> tuple[str, Path]:
    name, sep, directory = text.partition("=")
    if not sep or not name or not (Path(directory) / "config.json").is_file():
        raise argparse.ArgumentTypeError(
            f"expected NAME=DIRECTORY of an exported model, got {text!r}"
        )
    return name, Path(directory)


def _arm(text: str) -> tuple[str, Path]:
    name, sep, directory = text.partition("=")
    if not sep or not name or not Path(directory).is_dir():
        raise argparse.ArgumentTypeError(f"expected NAME=DIRECTORY of checkpoints, got {text!r}")
    return name, Path(directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.arms", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score every new checkpoint of the arms")
    score.add_argument("arms", nargs="*", type=_arm, help="NAME=DIRECTORY of checkpoints")
    score.add_argument("--data", type=Path, required=True, help="the shapes benchmark root")
    score.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    score.add_argument("--num", type=int, default=1000, help="images per split")
    score.add_argument("--probe-num", type=int, default=200, help="flip-probe scenes")
    score.add_argument("--weights", choices=("ema", "generator"), default="ema")
    score.add_argument("--bundle", action="store_true", help="also score the bundled model")
    score.add_argument("--cache-dir", type=Path, help="where the shape classifier is cached")
    keep = commands.add_parser("save-state", help="an arm's G (EMA) and D, to commit")
    keep.add_argument("checkpoint", type=Path)
    keep.add_argument("out", type=Path)
    keep.add_argument("--stats", type=Path, help="the run's stats.jsonl (default: beside it)")
    drawn = commands.add_parser("pictures", help="the README's captions, drawn by each model")
    drawn.add_argument("out", type=Path)
    drawn.add_argument("models", nargs="+", type=_model, help="NAME=DIRECTORY of a model")
    drawn.add_argument("--per-caption", type=int, default=8)
    table = commands.add_parser("table", help="print the results (and plot the curve)")
    table.add_argument("results", type=Path)
    table.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pictures":
        from benchmarks.arms_drawing import pictures

        pictures(args.models, args.out, args.per_caption)
        print(f"wrote {args.out}")
        return 0
    if args.command == "save-state":
        print(json.dumps(save_state(args.checkpoint, args.out, args.stats)))
        return 0
    if args.command == "score":
        rows = score_arms(args)
    else:
        rows = json.loads(args.results.read_text())
        if args.plot:
            from benchmarks.arms_drawing import plot

            plot(rows, args.plot)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
