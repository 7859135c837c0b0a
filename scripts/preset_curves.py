"""Pick a CPU-sized shapes preset: training speed side by side, and learning curves compared at
equal wall-clock (docs/experiments/cpu-preset.md). Drives the project's own Trainer; one torch
thread.

    python scripts/preset_curves.py cache DATA CACHE_DIR
    python scripts/preset_curves.py speed DATA --cache CACHE_DIR
    python scripts/preset_curves.py curve DATA OUT_JSON --cache CACHE_DIR --minutes 8 \
        --points 4 --preset shapes-32-cpu --set optim.batch_size=32 --set optim.lr_g=2e-4
    python scripts/preset_curves.py rescore DATA OUT_JSON RUN_DIR...
    python scripts/preset_curves.py plot OUT_PNG RESULT_JSON...

`curve` trains for --minutes of training wall-clock (evaluation time excluded), and at
--points evenly spaced times scores faithfulness (fraction of the real-image ceiling, which
is 1.0 by construction) on the first --num val images, for the EMA generator and the raw G.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from models.generator import Generator
from training.config_io import apply_overrides, train_config

SPEED_CASES: list[tuple[str, str, dict[str, Any], bool]] = [  # label, preset, overrides, cache
    ("shapes-32 b16", "shapes-32", {"optim.batch_size": 16}, False),
    ("shapes-32 b16 +cache", "shapes-32", {"optim.batch_size": 16}, True),
    ("shapes-32 b32 +cache", "shapes-32", {"optim.batch_size": 32}, True),
    (
        "gf6/df8 b32 +cache",
        "shapes-32",
        {"optim.batch_size": 32, "generator.gf_dim": 6, "discriminator.df_dim": 8},
        True,
    ),
    (
        "gf4/df6 b32",
        "shapes-32",
        {"optim.batch_size": 32, "generator.gf_dim": 4, "discriminator.df_dim": 6},
        False,
    ),
    (
        "gf4/df6 b32 +cache",
        "shapes-32",
        {"optim.batch_size": 32, "generator.gf_dim": 4, "discriminator.df_dim": 6},
        True,
    ),
    (
        "gf4/df6 b64 +cache",
        "shapes-32",
        {"optim.batch_size": 64, "generator.gf_dim": 4, "discriminator.df_dim": 6},
        True,
    ),
    (
        "gf4/df4 b32 +cache",
        "shapes-32",
        {"optim.batch_size": 32, "generator.gf_dim": 4, "discriminator.df_dim": 4},
        True,
    ),
    (
        "gf4/df6 b16 +cache",
        "shapes-32",
        {"optim.batch_size": 16, "generator.gf_dim": 4, "discriminator.df_dim": 6},
        True,
    ),
    (
        "gf4/df6 b32 +cache channels_last",
        "shapes-32",
        {
            "optim.batch_size": 32,
            "generator.gf_dim": 4,
            "discriminator.df_dim": 6,
            "run.channels_last": "on",
        },
        True,
    ),
    (
        "gf4/df6 b32 +cache compile",
        "shapes-32",
        {
            "optim.batch_size": 32,
            "generator.gf_dim": 4,
            "discriminator.df_dim": 6,
            "run.compile": True,
        },
        True,
    ),
    (
        "gf4/df6 b16 +cache compile",
        "shapes-32",
        {
            "optim.batch_size": 16,
            "generator.gf_dim": 4,
            "discriminator.df_dim": 6,
            "run.compile": True,
        },
        True,
    ),
    (
        "shapes-32 b16 +cache compile",
        "shapes-32",
        {"optim.batch_size": 16, "run.compile": True},
        True,
    ),
]


def train_captions(data: Path) -> list[str]:
    """Every caption a training batch can hold: the train captions and their flipped twins."""
    from training.data.base import swap_left_right
    from training.data.coco import load_captions_file

    records = load_captions_file(data / "annotations" / "captions_train.json", data / "train")
    captions = [c for r in records for c in r.captions]
    return list(dict.fromkeys(captions + [swap_left_right(c) for c in captions]))


def make_trainer(
    data: Path, run_dir: Path, preset: str, overrides: dict[str, Any], cache: Path | None
):
    from training.text_cache import DiskTextCache
    from training.trainer import Trainer

    values: dict[str, Any] = {
        "preset": preset,
        "data.source": str(data),
        "run.num_workers": 0,
        "optim.steps": 10**9,
        "run.log_every": 10**9,
        "run.sample_every": 10**9,
        "run.checkpoint_every": 10**9,
    }
    values.update(overrides)
    trainer = Trainer(train_config(apply_overrides({}, values)), run_dir, progress=False)
    if cache is not None:
        trainer.text_encoder = DiskTextCache(cache, trainer.text_encoder)
    return trainer


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    rows = []
    for label, preset, overrides, cached in SPEED_CASES:
        if args.only and label not in args.only:
            continue
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            trainer = make_trainer(
                args.data, Path(work), preset, overrides, args.cache if cached else None
            )
            batches = trainer.batches()
            for _ in range(args.warmup):
                trainer.train_step(next(batches))
            data_s = step_s = 0.0
            for _ in range(args.steps):
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                trainer.train_step(batch)
                data_s, step_s = data_s + t1 - t0, step_s + time.perf_counter() - t1
            images = args.steps * trainer.config.optim.batch_size
            g = sum(p.numel() for p in trainer.generator.parameters())
            d = sum(p.numel() for p in trainer.discriminator.parameters())
            rows.append(
                {
                    "case": label,
                    "img_per_s": images / (data_s + step_s),
                    "step_img_per_s": images / step_s,
                    "g_params": g,
                    "d_params": d,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


def score(generator: Generator, text_encoder, data: Path, num: int) -> dict[str, float]:
    from models.pipeline import XMCGANPipeline
    from training.shapes.faithfulness import faithfulness

    pipe = XMCGANPipeline(
        copy.deepcopy(generator).eval(), text_encoder, device="cpu", model_id="curve"
    )
    result = faithfulness(pipe, data, "val", num=num, reference=False)["generated"]
    return {k: v for k, v in result.items() if isinstance(v, float)}


def curve(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    from training.config_io import parse_overrides

    overrides = parse_overrides(args.set)
    run_dir = args.work / args.out.stem
    trainer = make_trainer(args.data, run_dir, args.preset, overrides, args.cache)
    encoder = getattr(trainer.text_encoder, "encoder", trainer.text_encoder)
    marks = [args.minutes * 60 * (i + 1) / args.points for i in range(args.points)]
    batches, trained, points = trainer.batches(), 0.0, []
    start = time.perf_counter()
    for mark in marks:
        while trained < mark:
            t0 = time.perf_counter()
            trainer.train_step(next(batches))
            trained += time.perf_counter() - t0
        point = {
            "train_s": trained,
            "step": trainer.step,
            "images": trainer.step * trainer.config.optim.batch_size,
            "ema": score(trainer.ema, encoder, args.data, args.num),
            "raw": score(trainer.generator, encoder, args.data, args.num),
        }
        points.append(point)
        print(json.dumps(point), flush=True)
    trainer.save()
    result = {
        "label": args.label or args.out.stem,
        "preset": args.preset,
        "overrides": overrides,
        "cache": str(args.cache) if args.cache else None,
        "num": args.num,
        "wall_s": time.perf_counter() - start,
        "points": points,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


@torch.no_grad()
def recalibrate_batch_norm(
    generator: Generator,
    text_encoder,
    data: Path,
    images: int = 2048,
    batch: int = 64,
    seed: int = 0,
) -> Generator:
    """A copy of `generator` whose BN running statistics are re-estimated for its own weights
    (a cumulative average over `images` random train captions and z), instead of the live G's."""
    import random

    from training.data.coco import load_captions_file

    records = load_captions_file(data / "annotations" / "captions_train.json", data / "train")
    rng = random.Random(seed)
    generator = copy.deepcopy(generator)
    for module in generator.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative moving average
    generator.train()
    z_gen = torch.Generator().manual_seed(seed)
    for _ in range(images // batch):
        captions = [rng.choice(rng.choice(records).captions) for _ in range(batch)]
        text = text_encoder.encode(captions, "cpu")
        z = torch.randn(batch, generator.config.z_dim, generator=z_gen)
        generator(z, text.sentence, text.words, text.mask)
    return generator.eval()


def rescore(args: argparse.Namespace) -> None:
    """The final checkpoint of curve runs: raw G, EMA (live G's BN stats), EMA re-estimated BN."""
    from models.config import GeneratorConfig, TextEncoderConfig, config_from_dict
    from models.generator import Generator
    from models.text_encoder import TextEncoder
    from training.checkpoint import load_run_or_file

    torch.set_num_threads(1)
    rows = []
    for run_dir in args.run_dirs:
        described = json.loads((run_dir / "config.json").read_text())
        state = load_run_or_file(run_dir)  # its newest good checkpoint
        encoder = TextEncoder.from_config(
            config_from_dict(TextEncoderConfig, described["text_encoder"])
        )
        row: dict[str, Any] = {"run": run_dir.name, "step": state["step"]}
        for key in ("generator", "ema"):
            generator = Generator(config_from_dict(GeneratorConfig, described["generator"]))
            generator.load_state_dict(state[key])
            row["raw" if key == "generator" else "ema"] = score(
                generator, encoder, args.data, args.num
            )
            if key == "ema":
                row["ema_recal"] = score(
                    recalibrate_batch_norm(generator, encoder, args.data),
                    encoder,
                    args.data,
                    args.num,
                )
        rows.append(row)
        print(
            json.dumps({k: (v["mean"] if isinstance(v, dict) else v) for k, v in row.items()}),
            flush=True,
        )
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


def build_cache(args: argparse.Namespace) -> None:
    from models.config import get_preset
    from models.text_encoder import TextEncoder
    from training.text_cache import build_text_cache

    torch.set_num_threads(1)
    encoder = TextEncoder.from_config(get_preset("shapes-32").text_encoder)
    captions = train_captions(args.data)
    print(f"{len(captions)} distinct captions", flush=True)
    build_text_cache(encoder, captions, args.cache_dir, batch_size=256)


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for path in args.results:
        result = json.loads(Path(path).read_text())
        minutes = [p["train_s"] / 60 for p in result["points"]]
        for ax, key in zip(axes, ("ema", "raw"), strict=True):
            ax.plot(
                minutes,
                [p[key]["mean"] for p in result["points"]],
                marker="o",
                label=result["label"],
            )
    for ax, key in zip(axes, ("EMA generator", "raw generator"), strict=True):
        ax.set_title(f"{key}: faithfulness on val[:{result['num']}]")
        ax.set_xlabel("training wall-clock, minutes (1 thread)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of the real-image ceiling")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("data", type=Path)
    c.add_argument("cache_dir", type=Path)
    s = sub.add_parser("speed")
    s.add_argument("data", type=Path)
    s.add_argument("--cache", type=Path, required=True)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--only", action="append", default=[], help="case labels to run (repeat)")
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--work", type=Path, default=Path("/var/tmp/preset-exp"))
    s.add_argument("--out", type=Path, default=Path("/var/tmp/preset-exp/speed.json"))
    r = sub.add_parser("curve")
    r.add_argument("data", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--cache", type=Path, default=None)
    r.add_argument("--preset", default="shapes-32-cpu")
    r.add_argument("--set", action="append", default=[])
    r.add_argument("--label", default="")
    r.add_argument("--minutes", type=float, default=8)
    r.add_argument("--points", type=int, default=4)
    r.add_argument("--num", type=int, default=200)
    r.add_argument("--work", type=Path, default=Path("/var/tmp/preset-exp"))
    q = sub.add_parser("rescore")
    q.add_argument("data", type=Path)
    q.add_argument("out", type=Path)
    q.add_argument("run_dirs", type=Path, nargs="+")
    q.add_argument("--num", type=int, default=200)
    g = sub.add_parser("plot")
    g.add_argument("out", type=Path)
    g.add_argument("results", nargs="+")
    args = p.parse_args()
    {"cache": build_cache, "speed": speed, "curve": curve, "rescore": rescore, "plot": plot}[
        args.command
    ](args)


if __name__ == "__main__":
    main()
