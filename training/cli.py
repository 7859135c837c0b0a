"""Console scripts: `xmc-train` and `xmc-export`."""

from __future__ import annotations

import argparse
import dataclasses
import json
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
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig field, e.g. --set lr_d=2e-4 (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return p


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Saved run config (when resuming) <- flags <- --set overrides, validated."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    saved = Path(args.run_dir) / "config.json"
    values: dict[str, Any] = {}
    if saved.exists():
        values = dict(json.loads(saved.read_text())["train"])
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    for name in _COMMON:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.losses is not None:
        values["losses"] = tuple(x for x in args.losses.split(",") if x)
    for flag in ("infomax", "gather_negatives", "compile"):
        if getattr(args, flag):
            values[flag] = True
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        values[key] = _parse_value(fields[key], text)
    return TrainConfig(**values)


def train_main(argv: Sequence[str] | None = None) -> int:
    args = _train_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except (ValueError, TypeError) as e:
        print(f"xmc-train: error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        from models.text_encoder import TextEncoderLoadError
        from training.config import describe

        try:
            print(json.dumps(describe(config), indent=2, sort_keys=True))
        except TextEncoderLoadError as e:
            print(f"xmc-train: error: {e}", file=sys.stderr)
            return 2
        return 0
    from models.text_encoder import TextEncoderLoadError
    from training.data.coco import DatasetError
    from training.trainer import RunError, Trainer

    try:
        trainer = Trainer(config, args.run_dir, progress=not args.no_progress)
    except (RunError, DatasetError, TextEncoderLoadError, ValueError, OSError) as e:
        print(f"xmc-train: error: {e}", file=sys.stderr)
        return 2
    if trainer.step:
        print(f"resuming {args.run_dir} at step {trainer.step}", file=sys.stderr)
    summary = trainer.fit()
    if summary["interrupted"]:
        print(
            f"interrupted at step {summary['step']}; checkpoint saved to "
            f"{summary['checkpoint']}; run `xmc-train {args.run_dir}` to resume",
            file=sys.stderr,
        )
    else:
        print(
            f"done: {summary['step']} steps; export with `xmc-export {args.run_dir} OUT_DIR`",
            file=sys.stderr,
        )
    return 0


def export_run(run_dir: str | Path, out_dir: str | Path, model_id: str | None = None) -> Path:
    """Write the inference artifact (EMA generator + config + text-encoder reference)."""
    from models.config import GeneratorConfig, TextEncoderConfig, config_from_dict
    from models.generator import Generator
    from models.pipeline import save_artifact
    from training.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from training.trainer import RunError

    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / "config.json", run_dir / CHECKPOINT_NAME
    if not config_path.exists() or not ckpt_path.exists():
        raise RunError(f"{run_dir} is not a training run (needs config.json and {CHECKPOINT_NAME})")
    described = json.loads(config_path.read_text())
    state = load_checkpoint(ckpt_path)
    generator = Generator(config_from_dict(GeneratorConfig, described["generator"]))
    generator.load_state_dict(state["ema"])
    text_config = config_from_dict(TextEncoderConfig, described["text_encoder"])
    train = described["train"]
    save_artifact(
        out_dir,
        generator.eval(),
        text_config,
        model_id or run_dir.name,
        extra={
            "training": {
                "steps": state["step"],
                "images": state["step"] * train["batch_size"] * state["world_size"],
                "preset": train["preset"],
                "losses": list(train["losses"]),
                "adversarial": train["adversarial"],
                "infomax": train["infomax"],
            }
        },
    )
    return Path(out_dir)


def export_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="xmc-export", description="Export a run's EMA generator as an inference artifact"
    )
    p.add_argument("run_dir")
    p.add_argument("out_dir")
    p.add_argument("--model-id", default=None, help="name served by the API (default: run name)")
    args = p.parse_args(argv)
    from models.artifacts import ArtifactError
    from training.trainer import RunError

    try:
        out = export_run(args.run_dir, args.out_dir, args.model_id)
    except (RunError, ArtifactError, ValueError, KeyError) as e:
        print(f"xmc-export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}/config.json and {out}/model.safetensors")
    return 0


if __name__ == "__main__":  # `python -m training.cli` / `torchrun -m training.cli` == xmc-train
    raise SystemExit(train_main())
