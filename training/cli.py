"""Console scripts: `xmc-train` and `xmc-export`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.config_io import apply_overrides, parse_overrides, train_config, upgrade

# the flags a user sets most (flag, type, where it goes); everything else is --set key=value
_COMMON = {
    "preset": (str, "preset"),
    "data": (str, "data.source"),
    "steps": (int, "optim.steps"),
    "batch_size": (int, "optim.batch_size"),
    "adversarial": (str, "objective.adversarial"),
    "seed": (int, "run.seed"),
    "text_encoder": (str, "text_encoder.name_or_path"),
    "image_encoder": (str, "objective.image_encoder"),
    "num_workers": (int, "run.num_workers"),
}
# the on/off flags and where each goes
_SWITCHES = {
    "infomax": "discriminator.infomax",
    "gather_negatives": "objective.gather_negatives",
    "compile": "run.compile",
    "strict_data": "data.strict_data",
}


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xmc-train",
        description="Train XMC-GAN. On an existing run directory, resume it.",
        epilog="example: xmc-shapes make data/shapes && "
        "xmc-train runs/shapes64 --preset shapes-64 --data data/shapes --steps 20000",
    )
    p.add_argument("run_dir", help="run directory (created, or resumed when it holds a run)")
    for name, (kind, where) in _COMMON.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, dest=name, type=kind, default=None, help=f"sets {where}")
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
        help="any other field, SECTION.FIELD=VALUE with SECTION data, optim, objective, run, "
        "experiments or a network config: --set optim.lr_d=2e-4 --set generator.gf_dim=16 "
        "(repeatable; docs/training.md lists them)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved configuration (sections and network configs) and exit",
    )
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
        values, source = upgrade(json.loads(saved.read_text()))["train"], str(saved)
    elif run_dir.is_dir():
        from training.checkpoint import CheckpointError, load_latest

        try:
            latest = load_latest(run_dir, quarantine=False)
        except CheckpointError:
            latest = None  # the trainer names every damaged checkpoint when it starts
        if latest is not None:
            values, source = upgrade(latest[1]["config"])["train"], str(latest[0])
    return values, source


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Saved run config (when resuming: `saved_config`) <- flags <- --set overrides,
    validated."""
    saved, _ = saved_config(args.run_dir)
    given: dict[str, Any] = {}
    for name, (_, where) in _COMMON.items():
        if getattr(args, name) is not None:
            given[where] = getattr(args, name)
    if args.losses is not None:
        given["objective.losses"] = tuple(x for x in args.losses.split(",") if x)
    given.update({where: True for flag, where in _SWITCHES.items() if getattr(args, flag)})
    given.update(parse_overrides(args.set))
    return train_config(apply_overrides(saved, given))


def _error(message: str) -> None:
    from training.distributed import launch_env

    # under torchrun each rank reports its own error: say whose it is
    env = launch_env()
    rank = f"rank {env.rank}: " if env.world_size > 1 else ""
    print(f"xmc-train: error: {rank}{message}", file=sys.stderr, flush=True)


def _dry_run(args: argparse.Namespace, config: TrainConfig) -> int:
    """--dry-run: the resolved configuration and the batch per D update and per process."""
    from models.text_encoder import TextEncoderLoadError
    from training.config import describe
    from training.distributed import launch_env

    _, source = saved_config(args.run_dir)
    if source:
        print(
            f"resuming {args.run_dir}: its saved config ({source}, preset "
            f"{config.preset}) with the flags given",
            file=sys.stderr,
        )
    try:
        print(json.dumps(describe(config), indent=2))  # train (preset, sections), then networks
        world = launch_env().world_size
        per_process = config.optim.process_batch(world)
    except (TextEncoderLoadError, ValueError) as e:
        _error(str(e))
        return 2
    d_steps = config.optim.d_steps
    rule = "optim.global_batch" if config.optim.global_batch else "optim.batch_size"
    print(
        f"batch ({rule}): {per_process * world // d_steps} images per D update over {world} "
        f"process(es), {per_process} per process per step ({d_steps} sub-batches)",
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
    from training.checkpoint import load_run_or_file

    source = Path(source)
    state = load_run_or_file(source)
    name = source.parent.name if source.is_file() else source.name
    return export_state(state, out_dir, model_id or name, weights, source_name=source.name)


def export_state(
    state: dict[str, Any], out_dir: str | Path, model_id: str, weights: str, source_name: str
) -> Path:
    """`export_run` from a checkpoint already loaded (`training.checkpoint.load_checkpoint`), for
    a caller that reads it for other work too."""
    from models.config import GeneratorConfig, TextEncoderConfig, config_from_dict
    from models.generator import Generator
    from models.hub import write_model_card
    from models.pipeline import save_artifact

    described = upgrade(state["config"])
    generator = Generator(config_from_dict(GeneratorConfig, described["generator"]))
    generator.load_state_dict(state[weights])
    text_config = config_from_dict(TextEncoderConfig, described["text_encoder"])
    train = described["train"]
    save_artifact(
        out_dir,
        generator.eval(),
        text_config,
        model_id,
        extra={
            "training": {
                "steps": state["step"],
                "images": state["images_seen"],
                "preset": train["preset"],
                "losses": list(train["objective"]["losses"]),
                "adversarial": train["objective"]["adversarial"],
                "infomax": described["discriminator"]["infomax"],
                "weights": weights,
            }
        },
    )
    write_model_card(
        out_dir,
        model_id,
        description=f"XMC-GAN generator ({train['preset']}), {state['images_seen']:,} images "
        f"seen; exported by xmc-export from {source_name}.",
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
