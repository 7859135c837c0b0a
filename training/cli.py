"""Console scripts: `xmc-train` and `xmc-export`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import TrainConfig

# the flags a user sets most; everything else goes through --set key=value
_COMMON = {
    "preset": str,
    "data": str,
    "steps": int,
    "batch_size": int,
    "adversarial": str,
    "seed": int,
    "text_encoder": str,
    "image_encoder": str,
    "num_workers": int,
}


def _parse_value(field: dataclasses.Field, text: str) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if "tuple" in kind:
        return tuple(x for x in text.split(",") if x)
    if kind == "bool":
        if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"expected true/false, got {text!r}")
        return text.lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xmc-train",
        description="Train XMC-GAN. On an existing run directory, resume it.",
        epilog="example: xmc-shapes make data/shapes && "
        "xmc-train runs/shapes64 --preset shapes-64 --data data/shapes --steps 20000",
    )
    p.add_argument("run_dir", help="run directory (created, or resumed when it holds a run)")
    for name, kind in _COMMON.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    p.add_argument(
        "--losses", default=None, help="comma-separated subset of sent,word,img ('' = none)"
    )
    p.add_argument(
        "--infomax", action="store_true", default=None, help="add the InfoMax-GAN local-global loss"
    )
    p.add_argument(
        "--gather-negatives",
        action="store_true",
        default=None,
        help="contrastive negatives from all devices (default: per device)",
    )
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile G and D")
    p.add_argument(
        "--strict-data",
        action="store_true",
        default=None,
        help="stop at an undecodable image or an empty caption (default: skip and count them)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig field, e.g. --set lr_d=2e-4 (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return p


def saved_config(run_dir: str | Path) -> tuple[dict[str, Any], str]:
    """The TrainConfig values a run directory holds and where they came from: its
    config.json, else (a folder of checkpoints alone) its newest good checkpoint, which
    carries the full config; ({}, "") for a new run."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    values: dict[str, Any] = {}
    source = ""
    if saved.exists():
        values, source = dict(json.loads(saved.read_text())["train"]), str(saved)
    elif run_dir.is_dir():
        from training.checkpoint import CheckpointError, load_latest

        try:
            latest = load_latest(run_dir, quarantine=False)
        except CheckpointError:
            latest = None  # the trainer names every damaged checkpoint when it starts
        if latest is not None:
            values, source = dict(latest[1]["config"]["train"]), str(latest[0])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}, source


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Saved run config (when resuming: `saved_config`) <- flags <- --set overrides,
    validated."""
    values, _ = saved_config(args.run_dir)
    for name in _COMMON:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.losses is not None:
        values["losses"] = tuple(x for x in args.losses.split(",") if x)
    for flag in ("infomax", "gather_negatives", "compile", "strict_data"):
        if getattr(args, flag):
            values[flag] = True
    values.update(parse_overrides(args.set))
    return TrainConfig(**values)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """--set KEY=VALUE items -> TrainConfig field values, typed as the fields are."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        values[key] = _parse_value(fields[key], text)
    return values


def _error(message: str) -> None:
    # under torchrun each rank reports its own error: say whose it is
    rank = f"rank {os.environ['RANK']}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    print(f"xmc-train: error: {rank}{message}", file=sys.stderr, flush=True)


def _dry_run(args: argparse.Namespace, config: TrainConfig) -> int:
    """--dry-run: the resolved configuration and the batch per D update and per process."""
    from models.text_encoder import TextEncoderLoadError
    from training.config import describe

    _, source = saved_config(args.run_dir)
    if source:
        print(
            f"resuming {args.run_dir}: its saved config ({source}, preset "
            f"{config.preset}) with the flags given",
            file=sys.stderr,
        )
    try:
        print(json.dumps(describe(config), indent=2, sort_keys=True))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        per_process = config.process_batch(world)
    except (TextEncoderLoadError, ValueError) as e:
        _error(str(e))
        return 2
    per_update = per_process * world // config.d_steps
    print(
        f"batch: {per_update} images per D update over {world} process(es), "
        f"{per_process} per process per step ({config.d_steps} sub-batches)",
        file=sys.stderr,
    )
    return 0


def train_main(argv: Sequence[str] | None = None, *, text_encoder: Any = None) -> int:
    """`xmc-train`. Exit 0 when done or stopped by Ctrl-C / SIGTERM (after saving), 2 for a bad
    configuration or run directory, 1 when training fails; every error is one line.
    `text_encoder` hands the trainer an already loaded encoder (tests)."""
    args = _train_parser().parse_args(argv)
    if not (args.no_progress or args.dry_run):  # torch takes seconds to import: say so first
        print(f"xmc-train: starting {args.run_dir} (importing torch)...", file=sys.stderr)
    try:
        config = resolve_config(args)
    except (ValueError, TypeError) as e:
        _error(str(e))
        return 2
    from models.text_encoder import TextEncoderLoadError

    if args.dry_run:
        return _dry_run(args, config)
    from training.data.base import DatasetError
    from training.faults import RunError, one_line
    from training.trainer import Trainer

    try:
        trainer = Trainer(
            config, args.run_dir, text_encoder=text_encoder, progress=not args.no_progress
        )
    except (RunError, DatasetError, TextEncoderLoadError, ValueError, OSError) as e:
        _error(one_line(e))
        return 2
    if trainer.resumed_from is not None:
        print(
            f"resuming {args.run_dir} at step {trainer.step} ({trainer.images_seen:,} images "
            f"seen) from {trainer.resumed_from.name}",
            file=sys.stderr,
        )
    try:
        summary = trainer.fit()
    except Exception as e:  # noqa: BLE001 - whatever it is, one line and a non-zero status
        _error(one_line(e))
        return 1
    _report(summary, args.run_dir)
    return 0


def _report(summary: dict[str, Any], run_dir: str) -> None:
    faults = ""
    if summary["skipped_steps"] or summary["bad_records"]:
        faults = (
            f" ({summary['skipped_steps']} non-finite steps skipped, "
            f"{summary['bad_records']} bad records skipped)"
        )
    if summary["interrupted"]:
        print(
            f"interrupted at step {summary['step']}{faults}; checkpoint saved to "
            f"{summary['checkpoint']}; run `xmc-train {run_dir}` to resume",
            file=sys.stderr,
        )
    else:
        print(
            f"done: {summary['step']} steps, {summary['images']:,} images{faults}; export "
            f"with `xmc-export {run_dir} OUT_DIR`",
            file=sys.stderr,
        )


def export_run(
    source: str | Path, out_dir: str | Path, model_id: str | None = None, weights: str = "ema"
) -> Path:
    """Write the inference artifact (the EMA generator, or with weights="generator" the live one;
    config; text-encoder reference) from a run directory (its newest good checkpoint) or from
    one checkpoint file alone: a checkpoint holds the full resolved configuration."""
    if weights not in ("ema", "generator"):
        raise ValueError(f"weights must be ema or generator, got {weights!r}")
    from models.config import GeneratorConfig, TextEncoderConfig, config_from_dict
    from models.generator import Generator
    from models.hub import write_model_card
    from models.pipeline import save_artifact
    from training.checkpoint import load_run_or_file

    source = Path(source)
    state = load_run_or_file(source)
    name = source.parent.name if source.is_file() else source.name
    described = state["config"]
    generator = Generator(config_from_dict(GeneratorConfig, described["generator"]))
    generator.load_state_dict(state[weights])
    text_config = config_from_dict(TextEncoderConfig, described["text_encoder"])
    train = described["train"]
    save_artifact(
        out_dir,
        generator.eval(),
        text_config,
        model_id or name,
        extra={
            "training": {
                "steps": state["step"],
                "images": state["images_seen"],
                "preset": train["preset"],
                "losses": list(train["losses"]),
                "adversarial": train["adversarial"],
                "infomax": train["infomax"],
                "weights": weights,
            }
        },
    )
    write_model_card(
        out_dir,
        model_id or name,
        description=f"XMC-GAN generator ({train['preset']}), {state['images_seen']:,} images "
        f"seen; exported by xmc-export from {source.name}.",
        tags=[train["preset"]],
    )
    return Path(out_dir)


def export_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="xmc-export", description="Export a run's EMA generator as an inference artifact"
    )
    p.add_argument("run_dir", help="a run directory, or one checkpoint-*.pt file")
    p.add_argument("out_dir")
    p.add_argument("--model-id", default=None, help="name served by the API (default: run name)")
    p.add_argument(
        "--weights",
        choices=("ema", "generator"),
        default="ema",
        help="the EMA of G (default) or the live G, whichever scores better",
    )
    args = p.parse_args(argv)
    from models.artifacts import ArtifactError
    from training.checkpoint import CheckpointError
    from training.faults import RunError

    try:
        out = export_run(args.run_dir, args.out_dir, args.model_id, args.weights)
    except (RunError, CheckpointError, ArtifactError, ValueError, KeyError) as e:
        print(f"xmc-export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}/config.json and {out}/model.safetensors")
    return 0


if __name__ == "__main__":  # `python -m training.cli` / `torchrun -m training.cli` == xmc-train
    raise SystemExit(train_main())
