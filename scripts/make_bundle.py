"""Export a training run as the bundled default model, score it, and write its model card.

python scripts/make_bundle.py RUN_DIR DATA_ROOT [--checkpoint FILE] [--num 1000] [--out models/bundled/default]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

from models import XMCGANPipeline
from models.hub import write_model_card
from training.cli import export_run
from training.config import TrainConfig
from training.config_io import dotted, upgrade
from training.lineage import record_totals
from training.shapes.faithfulness import faithfulness
from training.shapes.figures import format_table
from training.shapes.headline import headline_count
from training.shapes.sources import SceneSource

# the card's fresh scenes: two-object scenes of the benchmark of seed 1 (the data is seed 0)
FRESH_TWO_OBJECTS = SceneSource(fresh_seed=1, objects=2)


def history_summary(run_dir: Path) -> str:
    """The run's whole history from history.jsonl: sessions, batch sizes by step range (in images
    seen), and how each session ended (a start without an end was killed)."""
    from training.run_dir import RunDir

    sessions: list[dict] = []
    for event in RunDir(run_dir).history():
        if event["event"] == "start":
            sessions.append({"start": event, "end": None})
        elif sessions and sessions[-1]["end"] is None:
            sessions[-1]["end"] = event
    if not sessions:
        return ""
    spans: list[list] = []  # [batch, first step, first images]
    for session in sessions:
        start = session["start"]
        if not spans or spans[-1][0] != start["batch"]:
            spans.append([start["batch"], start["step"], start["images"]])
    batches = ", then ".join(
        f"batch {b} from step {step:,} ({images:,} images seen)" for b, step, images in spans
    )
    ends: dict[str, int] = {}
    for session in sessions:
        how = session["end"]["how"] if session["end"] else "killed (no end record)"
        how = "error" if how.startswith("error") else how
        ends[how] = ends.get(how, 0) + 1
    endings = ", ".join(f"{n} {how}" for how, n in sorted(ends.items()))
    return f"{len(sessions)} session(s): {batches}; sessions ended: {endings}"


# TrainConfig fields that say where and how a run was kept, not what it learned
_BOOKKEEPING = {
    "data.source", "optim.steps", "preset", "optim.batch_size", "run.init_generator",
    "run.init_discriminator",
    "run.checkpoint_every", "run.keep_checkpoints", "run.log_every", "run.sample_every",
    "data.sample_split", "run.num_workers", "data.text_cache", "data.strict_data",
    "run.max_bad_steps", "run.amp", "run.channels_last", "run.compile",
}  # fmt: skip
# the recipe's own rates, named on every card
_ALWAYS = ("optim.lr_g", "optim.lr_d", "optim.ema_decay")
_NAMED_IN_RECIPE_ROW = (
    "optim.beta1", "optim.beta2", "optim.d_steps", "objective.losses", "objective.adversarial",
)  # fmt: skip


def run_train(described: dict) -> dict:
    """A run's recorded configuration (config.json) as {"section.field": value}, an older
    run's flat one upgraded."""
    return dotted(upgrade(described)["train"])


def recipe_switches(train: dict) -> dict:
    """The run's training choices that differ from TrainConfig's defaults (beyond _ALWAYS), e.g.
    experiments.swap_negatives, generator.gf_dim: what the card's recipe and reproduce line
    must name (a network field a run sets always differs from the preset's)."""
    defaults = dotted(json.loads(json.dumps(dataclasses.asdict(TrainConfig()))))
    return {
        key: value
        for key, value in train.items()
        if key not in _BOOKKEEPING
        and key not in _ALWAYS
        and (key not in defaults or value != defaults[key])
    }


def _set_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(x) for x in value)
    return str(value)


def switches_text(train: dict) -> str:
    """The recipe's other choices, for the card's recipe row ("" when it has none); the fields
    that row spells out itself (Adam's betas, D steps, losses, adversarial) are left off."""
    switches = recipe_switches(train)
    return "".join(
        f", {key}={_set_value(value)}"
        for key, value in switches.items()
        if key not in _NAMED_IN_RECIPE_ROW
    )


def reproduce_command(train: dict, steps: int) -> str:
    """The xmc-train line that repeats the run in one go (the run's own flags and --set)."""
    flags = [
        f"--preset {train['preset']}",
        "--data data/shapes32",
        f"--batch-size {train['optim.batch_size']}",
        f"--steps {steps}",
    ]
    switches = {key: train[key] for key in _ALWAYS} | recipe_switches(train)
    flags += [f"--set {key}={_set_value(value)}" for key, value in switches.items()]
    if train.get("run.init_generator"):
        start = "PARENT_STATE/generator" if forked(train) else "PREVIOUS_BUNDLE"
        flags.append(f"--set run.init_generator={start}")
    if train.get("run.init_discriminator"):
        flags.append("--set run.init_discriminator=PARENT_STATE/discriminator")
    return "xmc-train runs/shapes32 " + " \\\n    ".join(flags)


def model_card(args: argparse.Namespace, pipe: XMCGANPipeline, results: dict, run: dict) -> str:
    config, train, scores = run["config"], run["train"], run["scores"]
    ratio = {s: scores[s]["generated"]["mean"] / scores[s]["real"]["mean"] for s in scores}
    g_params = sum(p.numel() for p in pipe.generator.parameters())
    losses = ", ".join(train["objective.losses"]) or "none"
    return f"""# {args.model_id}: the bundled default model

XMC-GAN (Zhang et al., CVPR 2021) trained by this project's own trainer on the shapes captions
benchmark (`docs/shapes-benchmark.md`) at 32x32. It is what `xmc-serve` and
`XMCGANPipeline.from_pretrained()` load when given no model. It draws one or two coloured
circles, squares and triangles on a plain background from captions such as
"a red circle left of a blue square"; it knows nothing else.

| | |
|---|---|
| data | `xmc-shapes make DATA --size 32 --seed 0` (20,000 train images, 5 captions each) |
| preset | `{train["preset"]}` (G {g_params:,} parameters), text encoder `{config["text_encoder"]["name_or_path"]}` (frozen) |
| recipe | Adam ({train["optim.beta1"]}, {train["optim.beta2"]}), lr G {train["optim.lr_g"]:g} / D {train["optim.lr_d"]:g}, {train["optim.d_steps"]} D steps per G step, batch {train["optim.batch_size"]}, losses {losses} + {train["objective.adversarial"]}, EMA decay {train["optim.ema_decay"]}{switches_text(train)} |
| trained | {trained_line(config["training"], run["prior"], train)}; weights: {"EMA of G" if args.weights == "ema" else "the live G (it scored above the EMA)"} |
| wall time | {wall_line(run["seconds"], run["prior"])} |
| hardware | {platform.machine()} CPU (2 cores, {hardware_threads(args.torch_threads)}); no GPU |
| history | {run["history"] or "one uninterrupted run"} |

## Scores (faithfulness, `docs/shapes-benchmark.md`; {args.num} images per split)

val: {scores["val"]["generated"]["mean"]:.3f} = {ratio["val"]:.2f} of the real-image ceiling;
test_heldout (unseen colour-shape pairs): {scores["test_heldout"]["generated"]["mean"]:.3f} =
{ratio["test_heldout"]:.2f} of the ceiling.

```
{format_table(results["val"])}

{format_table(results["test_heldout"])}
```

Measured with `xmc-eval faithfulness --data DATA --split val --num {args.num}` (and
`--split test_heldout`).

## Reproduce

```bash
xmc-shapes make data/shapes32 --size 32 --seed 0
{reproduce_command(train, config["training"]["steps"])}
python scripts/make_bundle.py runs/shapes32 data/shapes32{" --weights generator" if args.weights == "generator" else ""}
```
"""


LIMITS_SECTION = """
## Below the target, and why

Two targets stand for this model, and neither is met in full. The first (val >= 0.90 of the
ceiling, test_heldout >= 0.75, relation >= 0.80 on val) misses on val only, by 0.01: the
per-attribute mean also checks the background of captions that name none, which a model drawing
what it is told cannot pass; over the checks each caption names (`named` mean) val is at 0.965.
Of the two-object target (two-object whole-caption accuracy >= 0.80 on val and >= 0.60 on unseen
pairs, "a red circle above a blue square" right in >= 14 of 16 seeds, no one-object attribute
worse than the bundle before the caption paths) all is met but the first: val reads 0.770 (0.733
on fresh scenes of that kind); unseen pairs 0.740 (0.720 fresh), the headline caption 15 of 16,
a lone object's colour 0.998 and shape 0.974 on val (that bundle: 0.992 and 0.972).

What holds it back is **shape**, and within it the square. Of the two-object images both
colours are right in 0.99, and where both objects are found the relation in 0.97, but both
shapes only in 0.78; squares drawn as circles are most of the shape misses (91 of 118 on val;
the report's `shapes` rows), and all 13 of the lone objects' misses. Its D tells a caption from
its shapes-exchanged twin on every real scene tried, so the limit is on G's side. The arms, their
curves and what each change did are in
[docs/experiments/two-objects.md](../../../docs/experiments/two-objects.md); the bundles before
this one, whose relation stayed near chance, in
[docs/experiments/cpu-preset.md](../../../docs/experiments/cpu-preset.md).

The curve, every committed bundle scored on 1000 images per split (`python
scripts/bundle_curve.py --plot docs/images/bundle_curve.png`): from 575,744 to 1,151,744
images the recipe's G rose from 0.736 to 0.767 on val with relation near 0.40; the caption
paths and the arms' D took it to 0.857 (relation 0.91) at 1,751,744 images, 0.877 at 1,951,744
and 0.890 (relation 0.94) at 2,051,744.

![the bundled model's scores against training images](../../../docs/images/bundle_curve.png)
"""


def two_object_section(results: dict, headline: dict, fresh: dict) -> str:
    """The whole-caption figures of the two-object scenes (the splits' and `fresh` ones: the
    two-object figures of fresh scenes per split), and the README's headline caption."""
    val, held = (results[s]["generated"] for s in ("val", "test_heldout"))
    two_val, two_held = val["two_objects"], held["two_objects"]
    return f"""
## Two objects

Scored by the whole caption (every check the caption names), the two-object scenes:
**{two_val["whole_caption"]:.3f} on val and {two_held["whole_caption"]:.3f} on test_heldout**
({fresh["val"]["whole_caption"]:.3f} and {fresh["test_heldout"]["whole_caption"]:.3f} on {fresh["val"]["num_images"]} and {fresh["test_heldout"]["num_images"]} fresh two-object scenes of each kind, `--fresh-seed 1 --objects 2`), against {val["one_object"]["whole_caption"]:.3f} / {held["one_object"]["whole_caption"]:.3f} for one-object captions. Of the two-object images both colours are right in {two_val["both_colors"]:.3f} / {two_held["both_colors"]:.3f}, both shapes in {two_val["both_shapes"]:.3f} / {two_held["both_shapes"]:.3f}, binding (each colour on its own shape) in {two_val["binding"]:.3f} / {two_held["binding"]:.3f}, and where both objects are found the relation in {two_val["relation_given_found"]:.3f} / {two_held["relation_given_found"]:.3f}. "{headline["caption"]}" is right in **{headline["right"]} of {len(headline["seeds"])} seeds** (both objects bound in {headline["binding"]}). `python -m benchmarks.flip_probe --data DATA` also tells how often a drawing follows its caption's relation flip and colour swap.
"""


def meets_target(scores: dict) -> bool:
    """Issue 11's target: val >= 0.90 and test_heldout >= 0.75 of the ceiling, relation >= 0.80."""
    ratio = {s: scores[s]["generated"]["mean"] / scores[s]["real"]["mean"] for s in scores}
    relation = scores["val"]["generated"].get("relation") or 0.0
    return ratio["val"] >= 0.90 and ratio["test_heldout"] >= 0.75 and relation >= 0.80


def forked(train: dict) -> bool:
    """Whether the run started from an arm's saved state (`benchmarks.arms save-state`: G and D
    beside a state.json) rather than from a bundle."""
    start = train.get("run.init_generator") or ""
    return bool(start) and (Path(start).parent / "state.json").is_file()


def trained_line(training: dict, prior: dict, train: dict) -> str:
    line = f"{training['images']:,} images seen ({training['steps']:,} generator steps)"
    if not prior["images"]:
        return line
    total = training["images"] + prior["images"]
    before = (
        "the saved state's G (its own history below)"
        if forked(train)
        else "the previous bundle's G"
    )
    d = "its saved D" if train.get("run.init_discriminator") else "a fresh D"
    return (
        f"{total:,} images in all: {prior['images']:,} by {before}, then "
        f"{line[:-1]}) in a run that started from it with {d} and fresh optimisers"
    )


def wall_line(seconds: float, prior: dict) -> str:
    hours = seconds / 3600
    if not prior["images"]:
        return f"{hours:.2f} h of training (stats.jsonl)"
    return (
        f"{hours + prior['hours']:.2f} h of training in all: {prior['hours']:.2f} h before, "
        f"{hours:.2f} h in this run (stats.jsonl)"
    )


def hardware_threads(threads: int) -> str:
    """How the run used the machine's two cores, for the card's hardware row."""
    if threads == 1:
        return "1 torch thread, the other core shared with other work"
    return f"{threads} torch threads"


def complete_captions_section(complete: dict, num: int) -> str:
    return f"""
## Scores with complete captions

The spec's draw above gives each image one of its five captions; about half name no background
and some two-object ones no relation, so even a perfect generator cannot score 1.0 on those
checks. Generated from a caption naming every scored attribute
(`xmc-eval faithfulness --captions complete`, {num} images per split):

```
{format_table(complete["val"])}

{format_table(complete["test_heldout"])}
```
"""


def write_bundle_readme(out: Path, model_id: str, preset: str) -> None:
    """The bundle's README.md (its Hub model card): its snippet loads the bundled model, with no
    path."""
    write_model_card(
        out,
        model_id,
        load_from="",
        description=f"XMC-GAN generator ({preset}): the bundled default model. "
        "MODEL_CARD.md gives its data, recipe, training time and scores.",
        tags=[preset],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--checkpoint",
        default="",
        help="one checkpoint file of the run (e.g. checkpoint-0006250.pt, a milestone) instead "
        "of its newest good one",
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("models/bundled/default"))
    parser.add_argument("--num", type=int, default=1000, help="images scored per split")
    parser.add_argument("--model-id", default="xmc-shapes-32")
    parser.add_argument("--history", default="", help="how the run went, for the card")
    parser.add_argument("--weights", choices=("ema", "generator"), default="ema")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads the run trained with"
    )
    parser.add_argument(
        "--prior-hours",
        type=float,
        default=0.0,
        help="training hours of the model the run started from (init_generator), where its "
        "config.json records none",
    )
    return parser


def main() -> None:
    args = _parser().parse_args()

    source = args.run_dir / args.checkpoint if args.checkpoint else args.run_dir
    export_run(source, args.out, model_id=args.model_id, weights=args.weights)
    train = run_train(json.loads((args.run_dir / "config.json").read_text()))
    write_bundle_readme(args.out, args.model_id, train["preset"])
    pipe = XMCGANPipeline.from_pretrained(args.out, device="cpu")
    results = {
        split: faithfulness(pipe, args.data, split, num=args.num, progress=True)
        for split in ("val", "test_heldout")
    }
    complete = {
        split: faithfulness(pipe, args.data, split, num=args.num, captions="complete")
        for split in ("val", "test_heldout")
    }
    scores = {
        split: {k: r[k] for k in ("generated", "real", "untrained")} for split, r in results.items()
    }
    for split, r in complete.items():
        scores[split]["generated_complete_captions"] = r["generated"]
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    # the run's hours up to the exported checkpoint, and what the model it started from had seen
    totals = record_totals(args.out, train, args.run_dir / "stats.jsonl", args.prior_hours)
    prior, seconds = totals["prior"], totals["seconds"]
    config = json.loads((args.out / "config.json").read_text())
    run = {
        "config": config,
        "train": train,
        "prior": prior,
        "seconds": seconds,
        "history": "; ".join(x for x in (history_summary(args.run_dir), args.history) if x),
        "scores": scores,
    }
    from training.shapes.classifier import load_or_train

    headline = headline_count(pipe, load_or_train(pipe.resolution, data_root=args.data))
    card = model_card(args, pipe, results, run) + complete_captions_section(complete, args.num)
    fresh = {
        split: faithfulness(
            pipe, args.data, split, num=args.num, reference=False, source=FRESH_TWO_OBJECTS
        )["generated"]["two_objects"]
        for split in ("val", "test_heldout")
    }
    card += two_object_section(results, headline, fresh)
    if not meets_target(scores):
        card += LIMITS_SECTION
    (args.out / "MODEL_CARD.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
