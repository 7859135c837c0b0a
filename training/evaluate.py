"""`xmc-eval`: faithfulness on the shapes benchmark, FID, KID and CLIP R-precision.

    xmc-eval faithfulness --model DIR --data ROOT --split val [--num N] [--clip PATH]
        [--captions complete] [--fresh-seed N] [--objects 1|2]
    xmc-eval fid --model DIR --data ROOT --split val --inception-weights PATH
    xmc-eval kid --model DIR --data ROOT --split val --inception-weights PATH
    xmc-eval protocol --model DIR --data COCO_ROOT --inception-weights PATH [--clip PATH]

`protocol` is the paper's: FID and KID (and CLIP score) on 30,000 images generated from
COCO val2014 captions, reference statistics cached (training/metrics/protocol.py,
docs/evaluation.md).

Every image of the split (or its first N) is generated from one of its captions (drawn
with --seed). Faithfulness is printed beside the same score for the real images (the
ceiling) and for an untrained generator of the same config (the floor), as the spec asks,
with the whole-caption figures (`shapes.figures`: every named check right, binding,
the relation given both objects found). `--fresh-seed N` scores the split's scenes of the
benchmark of seed N instead, drawn in memory (a score that cannot come from fitting the
fixed split); `--objects 2` keeps the two-object scenes only.
The measures live by concern: faithfulness in `training/shapes/faithfulness.py` (with the
scorer, the figures and the scene sources beside it in `training/shapes/`), FID and KID in
`training/metrics/distances.py`, the protocol in `training/metrics/protocol.py`; this module
is the command line and the files it writes.
Each command writes `{command}_{split}.json` and `{command}_{split}_samples.png` (rows:
real, generated, untrained) into --out, so runs can be compared (faithfulness adds
`_complete`, `_fresh{N}`, `_objects{K}` to the name for those options).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.images import image_grid
from training.data.base import DatasetError
from training.metrics import clip_score
from training.metrics import fid as metrics
from training.metrics.distances import feature_metric
from training.metrics.sampling import (  # noqa: F401  (part of this module's API)
    EvaluationError,
    complete_captions,
    generate,
    load_split,
    pick_captions,
    real_images,
)
from training.shapes import scorer as faith
from training.shapes.classifier import ShapeClassifierError
from training.shapes.faithfulness import faithfulness
from training.shapes.figures import format_table  # noqa: F401  (part of this module's API)
from training.shapes.pixels import ImageInputError
from training.shapes.scenes import BenchmarkError
from training.shapes.sources import (  # noqa: F401  (part of this module's API)
    FRESH_DEFAULT_NUM,
    SceneSource,
    scene_records,
)


def save_grid(rows: Sequence[torch.Tensor], path: Path, columns: int = 8) -> None:
    """Rows of (N, 3, R, R) uint8 images -> one PNG, `columns` images per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(torch.cat([row[:columns] for row in rows]), columns).save(path)


def write_results(result: dict[str, Any], out: Path, name: str) -> tuple[Path, Path]:
    """`{name}.json` beside `{name}_samples.png` under `out`."""
    images = result.pop("images")
    out.mkdir(parents=True, exist_ok=True)
    json_path, grid_path = out / f"{name}.json", out / f"{name}_samples.png"
    order = [key for key in ("real", "generated", "untrained") if key in images]
    save_grid([images[key] for key in order], grid_path)
    result["grid"] = {"file": grid_path.name, "rows": order}
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return json_path, grid_path


def _add_faithfulness_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--captions",
        choices=("random", "complete"),
        default="random",
        help="random: one of each image's captions (spec); complete: one naming all attributes",
    )
    command.add_argument(
        "--fresh-seed",
        type=int,
        metavar="N",
        help="score the split's scenes of the benchmark of seed N, drawn in memory "
        f"(new scenes of its distribution; --num defaults to {FRESH_DEFAULT_NUM})",
    )
    command.add_argument(
        "--objects", type=int, choices=(1, 2), help="score only the scenes with this many objects"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmc-eval", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("faithfulness", "attribute accuracy on the shapes benchmark"),
        ("fid", "Frechet Inception distance"),
        ("kid", "kernel Inception distance"),
        ("protocol", "the paper's FID/KID (and CLIP score) on 30,000 COCO val2014 captions"),
    ):
        paper = name == "protocol"
        command = commands.add_parser(name, help=text)
        command.add_argument("--model", help="artifact folder (default: the bundled model)")
        command.add_argument("--data", required=True, metavar="ROOT", help="dataset root")
        command.add_argument(
            "--split",
            default="val2014" if paper else "val",
            help="split name (default %(default)s)",
        )
        command.add_argument(
            "--num",
            type=int,
            default=30_000 if paper else None,
            help="images: random N (protocol, default 30000) or first N (others, default all)",
        )
        command.add_argument("--batch-size", type=int, default=50 if paper else 32)
        command.add_argument("--seed", type=int, default=0, help="caption choice and z seeds")
        command.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
        command.add_argument(
            "--out",
            type=Path,
            default=Path("eval_results"),
            help="folder for the JSON and the sample grid",
        )
        command.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "faithfulness":
            _add_faithfulness_flags(command)
        if name in ("faithfulness", "protocol"):
            cached = "reference statistics" if paper else "shape classifier"
            command.add_argument(
                "--cache-dir", type=Path, help=f"{cached} cache (default ROOT/.xmc_eval)"
            )
            command.add_argument(
                "--clip",
                metavar="PATH",
                help="local CLIP checkpoint: also report CLIP "
                + ("score" if paper else "R-precision"),
            )
        if name != "faithfulness":
            command.add_argument(
                "--inception-weights",
                required=True,
                metavar="PATH",
                help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid)",
            )
    return parser


def _run(args: argparse.Namespace) -> None:
    from models import XMCGANPipeline

    pipeline = XMCGANPipeline.from_pretrained(args.model, device=args.device)
    common = {
        "num": args.num,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "progress": not args.quiet,
        "return_images": True,
    }
    if args.command == "protocol":
        result = _run_protocol(pipeline, args)
    elif args.command == "faithfulness":
        result = _run_faithfulness(pipeline, args, common)
    else:
        from training.metrics.inception import FIDInceptionV3

        feature = FIDInceptionV3.from_file(args.inception_weights).to(pipeline.device)
        result = feature_metric(pipeline, args.data, args.split, feature, args.command, **common)
        result["inception_weights"] = Path(args.inception_weights).name
        print(
            f"{args.command.upper()} over {result['num_images']} images of {args.split}: "
            + (
                f"{result['fid']:.3f}"
                if args.command == "fid"
                else f"{result['kid_mean']:.5f} ± {result['kid_std']:.5f}"
            )
        )
    json_path, grid_path = write_results(result, args.out, _result_name(args))
    print(f"wrote {json_path} and {grid_path}")


def _result_name(args: argparse.Namespace) -> str:
    """`{command}_{split}[_complete][_fresh{N}][_objects{K}]`: one file per kind of run."""
    name = f"{args.command}_{args.split}"
    if getattr(args, "captions", "random") == "complete":
        name += "_complete"
    if getattr(args, "fresh_seed", None) is not None:
        name += f"_fresh{args.fresh_seed}"
    if getattr(args, "objects", None):
        name += f"_objects{args.objects}"
    return name


def _run_faithfulness(
    pipeline: Any, args: argparse.Namespace, common: dict[str, Any]
) -> dict[str, Any]:
    if args.clip and (args.fresh_seed is not None or args.objects):
        raise EvaluationError(
            "--clip ranks the split's own images: drop --fresh-seed and --objects"
        )
    result = faithfulness(
        pipeline,
        args.data,
        args.split,
        cache_dir=args.cache_dir,
        captions=args.captions,
        source=SceneSource(args.fresh_seed, args.objects),
        **common,
    )
    if args.clip:
        records = load_split(args.data, args.split, args.num)
        pool = [
            (r.image_id, caption)
            for r in load_split(args.data, args.split)
            for caption in r.captions
        ]
        result["clip_r_precision"] = clip_score.clip_r_precision(
            result["images"]["generated"],
            pick_captions(records, args.seed),
            [r.image_id for r in records],
            pool,
            args.clip,
            pipeline.device,
            seed=args.seed,
        )
    print(format_table(result))
    if "clip_r_precision" in result:
        print(f"CLIP R-precision (1 of 100): {result['clip_r_precision']:.3f}")
    return result


def _run_protocol(pipeline: Any, args: argparse.Namespace) -> dict[str, Any]:
    from training.metrics.inception import FIDInceptionV3
    from training.metrics.protocol import ProtocolConfig, evaluate_protocol

    config = ProtocolConfig(args.split, args.num, args.seed, args.batch_size)
    weights = Path(args.inception_weights)
    result = evaluate_protocol(
        pipeline,
        args.data,
        FIDInceptionV3.from_file(weights).to(pipeline.device),
        config,
        cache_dir=args.cache_dir or Path(args.data) / ".xmc_eval",
        feature_name=f"FIDInceptionV3:{weights.name}",
        clip_path=args.clip,
        progress=not args.quiet,
    )
    print(
        f"protocol over {result['num_images']} images of {args.split} at "
        f"{pipeline.resolution} px: FID {result['fid']:.3f}, "
        f"KID {result['kid_mean']:.5f} ± {result['kid_std']:.5f}"
        + (f", CLIP score {result['clip_score']:.2f}" if "clip_score" in result else "")
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from models.artifacts import ArtifactError
    from models.text_encoder import TextEncoderLoadError
    from training.metrics.inception import InceptionWeightsError

    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (
        EvaluationError,
        ShapeClassifierError,
        InceptionWeightsError,
        ArtifactError,
        TextEncoderLoadError,
        DatasetError,
        BenchmarkError,
        faith.AttributesError,
        ImageInputError,
        metrics.MetricInputError,
        OSError,
    ) as error:
        print(f"xmc-eval: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
