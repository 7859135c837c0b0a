"""Can XMC-GAN's G put each colour where the caption says, when that is all it is asked?

    python -m benchmarks.layout_capacity --data DATA [--steps 1500] [--paths sentence-head]
    python -m benchmarks.layout_capacity --data DATA --measure MODEL_OR_CHECKPOINT [...]

The G-side twin of `benchmarks.relation_capacity` (which asks it of D). A G (the bundled
model's by default, `--init none` for a fresh one of `--preset`; `--paths` adds caption paths
at their identity start) is trained on real two-object train scenes by regression alone: the
squared error between its image and the real one, both average-pooled to 8x8 (the layout, not
the texture). No D, no adversarial or contrastive term: with z random, the best such a G can
draw is the scenes' mean for its caption, each colour's mass in its half. If it cannot learn
that in as many steps, the caption's path through G does not carry the layout; if it can, what
keeps a GAN-trained G from drawing it is the training signal, not G's capacity.

The figures, on val two-object scenes with two different colours (`placement`): with a(c, p)
the share of colour c mixed into pixel p over the scene's background (clipped to [0, 1]) and
s(p) = +1 in the half where the caption puts the first object, -1 in the other, a drawing
places the colours right when sum_p (a(c1, p) - a(c2, p)) s(p) > 0. It reads sharp drawings
and blurred means alike: the real images score near 1, a G that ignores the relation 0.5.
`right`: the share placed right for the caption; `follows`: right for the caption and, same z,
for its relation-reversed twin (the layout moved with the words). `--measure` gives the same
figures for exported models or training checkpoints (their EMA G).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def sign_map(relation: str, size: int) -> Any:
    """(R, R): +1 on the half where a caption with `relation` puts its first object, -1 on
    the other (the benchmark draws each object inside its half, spec: shapes-benchmark.md)."""
    import torch

    from training.shapes.scenes import _RELATION_HALVES

    low = torch.arange(size) < size / 2  # left columns / top rows
    line = torch.where(low, 1.0, -1.0)
    half = _RELATION_HALVES[relation][0]
    line = line if half in ("left", "top") else -line
    return (
        line[None, :].expand(size, size)
        if half in ("left", "right")
        else line[:, None].expand(size, size)
    )


def placement(images: Any, scenes: Sequence[dict[str, Any]], reverse: bool = False) -> Any:
    """(N,) bool: each image (N, 3, R, R) in [0, 1] places its scene's first colour in the first
    object's half and the second in the other (the relation reversed with `reverse`)."""
    import torch

    from training.shapes.scenes import INVERSE_RELATION, PALETTE_BACKGROUNDS, PALETTE_OBJECTS

    right = []
    for image, scene in zip(images.float() * 255.0, scenes, strict=True):
        background = torch.tensor(PALETTE_BACKGROUNDS[scene["background"]], dtype=torch.float32)
        offset = image - background[:, None, None]  # (3, R, R)
        shares = []
        for obj in scene["objects"]:
            u = torch.tensor(PALETTE_OBJECTS[obj["color"]], dtype=torch.float32) - background
            shares.append((torch.einsum("chw,c->hw", offset, u) / u.dot(u)).clamp(0, 1))
        relation = scene["relation"]
        relation = INVERSE_RELATION[relation] if reverse else relation
        evidence = ((shares[0] - shares[1]) * sign_map(relation, image.shape[-1])).sum()
        right.append(bool(evidence > 0))
    return torch.tensor(right)


# Two captions per scene, each naming the relation: without the background (templates 0 and 2
# of the benchmark, "a red circle above a blue square" and its paraphrase), or naming it too
# (1, which also names the sizes, and 6), which leaves mostly the objects' places to learn.
TEMPLATES = {"relation": (0, 2), "full": (1, 6)}


def scenes_and_captions(
    data: str | Path, split: str, num: int | None, captions: str = "relation"
) -> dict[str, Any]:
    """The split's two-object scenes with two different colours: attributes, real images
    (N, 3, R, R) uint8 and, per scene, two captions naming the relation and their reversals."""
    from benchmarks.relation_capacity import scene_captions
    from training.metrics.sampling import load_split

    records = load_split(data, split, num, need_attributes=True)
    kept, true, reversed_ = scene_captions(records, TEMPLATES[captions])
    chosen = [
        n
        for n, i in enumerate(kept)
        if len({o["color"] for o in records[i].scene()["objects"]}) == 2
    ]
    return {
        "records": [records[kept[n]] for n in chosen],
        "scenes": [records[kept[n]].scene() for n in chosen],
        "true": [true[n] for n in chosen],
        "reversed": [reversed_[n] for n in chosen],
    }


def encode(encoder: Any, captions: list[list[str]]) -> Any:
    """TextFeatures of every caption, scene by scene: row 2 * scene + template."""
    import torch

    from models.text_encoder import TextFeatures

    flat = [c for row in captions for c in row]
    with torch.no_grad():
        return TextFeatures.cat(
            [encoder.encode(flat[i : i + 256]) for i in range(0, len(flat), 256)]
        )


def load_generator(source: str, preset: str, paths: Sequence[str]) -> tuple[Any, Any]:
    """(G, text encoder): an exported model (a folder), a training checkpoint's EMA (a .pt
    file) or, with source "none", a fresh G of `preset`; `paths` are added at identity."""
    if source == "none":
        from models.config import get_preset
        from models.generator import Generator
        from models.text_encoder import TextEncoder

        config = get_preset(preset)
        generator = Generator(dataclasses.replace(config.generator, caption_paths=tuple(paths)))
        return generator, TextEncoder.from_config(config.text_encoder)
    if Path(source).is_file():
        from training.cli import export_run

        with tempfile.TemporaryDirectory() as tmp:
            export_run(source, tmp, weights="ema")
            return _from_export(tmp, paths)
    return _from_export(source, paths)


def _from_export(directory: str, paths: Sequence[str]) -> tuple[Any, Any]:
    """An exported model's G with `paths` added at their identity start, as a run's
    `run.init_generator` is (`training.build.initial_generator`), and its text encoder."""
    import copy

    from models import XMCGANPipeline
    from models.generator import Generator
    from training.build import initial_generator

    pipeline = XMCGANPipeline.from_pretrained(directory, device="cpu")
    base = pipeline.generator.config
    if not set(paths) - set(base.caption_paths):
        return pipeline.generator, pipeline.text_encoder
    wanted = tuple(dict.fromkeys((*base.caption_paths, *paths)))
    generator = Generator(dataclasses.replace(base, caption_paths=wanted))
    initial_generator(generator, copy.deepcopy(generator), directory)
    return generator, pipeline.text_encoder


def measure(generator: Any, val: dict[str, Any], true: Any, reversed_: Any) -> dict[str, float]:
    """`right` and `follows` on the val scenes (the first caption of each; z seeds 0..N-1)."""
    import torch

    from models.runtime import sample_z

    generator.eval()
    n = len(val["scenes"])
    z = sample_z(list(range(n)), generator.config.z_dim)
    rows = [2 * i for i in range(n)]
    drawn = {}
    with torch.no_grad():
        for name, features in (("true", true.select(rows)), ("reversed", reversed_.select(rows))):
            parts = [
                generator(
                    z[s : s + 64],
                    features.sentence[s : s + 64],
                    features.words[s : s + 64],
                    features.mask[s : s + 64],
                )
                for s in range(0, n, 64)
            ]
            drawn[name] = torch.cat(parts)
    right = placement(drawn["true"], val["scenes"])
    moved = placement(drawn["reversed"], val["scenes"], reverse=True)
    return {"right": float(right.float().mean()), "follows": float((right & moved).float().mean())}


def fit(generator: Any, train: dict[str, Any], features: Any, args: argparse.Namespace) -> float:
    """Regress G's 8x8-pooled drawing onto the real scene's; returns the last loss."""
    import torch
    import torch.nn.functional as F

    from training.metrics.sampling import real_images

    size = generator.config.resolution
    real = F.avg_pool2d(real_images(train["records"], size).float() / 255.0, size // 8)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    optimiser = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    generator.train()
    loss = torch.zeros(())
    for _ in range(args.steps):
        index = rng.sample(range(len(real)), args.batch_size)
        rows = [2 * i + rng.randrange(2) for i in index]
        text = features.select(rows)
        z = torch.randn(len(index), generator.config.z_dim)
        drawn = generator(z, text.sentence, text.words, text.mask)
        loss = F.mse_loss(F.avg_pool2d(drawn, size // 8), real[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.metrics.sampling import EvaluationError, real_images

    val = scenes_and_captions(args.data, "val", args.val_num, args.captions)
    if not val["scenes"]:
        raise EvaluationError("no two-colour two-object scenes in val; read more with --val-num")
    paths = tuple(p for p in args.paths.split(",") if p)
    sources = args.measure or [args.init]
    generator, encoder = load_generator(sources[0], args.preset, () if args.measure else paths)
    size = generator.config.resolution
    val_true, val_reversed = encode(encoder, val["true"]), encode(encoder, val["reversed"])
    real = placement(real_images(val["records"], size).float() / 255.0, val["scenes"])
    result: dict[str, Any] = {
        "val_scenes": len(val["scenes"]),
        "real_right": float(real.float().mean()),
    }
    if args.measure:
        result["models"] = {}
        for n, source in enumerate(sources):  # the first is loaded already
            generator = generator if n == 0 else load_generator(source, args.preset, ())[0]
            result["models"][source] = measure(generator, val, val_true, val_reversed)
        return result
    train = scenes_and_captions(args.data, "train", args.num, args.captions)
    if len(train["scenes"]) < args.batch_size:
        raise EvaluationError(
            f"{len(train['scenes'])} two-colour scenes in train; read more with --num"
        )
    result.update(
        captions=args.captions,
        init=args.init,
        paths=list(paths),
        steps=args.steps,
        train_scenes=len(train["scenes"]),
    )
    result["before"] = measure(generator, val, val_true, val_reversed)
    result["last_loss"] = fit(generator, train, encode(encoder, train["true"]), args)
    result["after"] = measure(generator, val, val_true, val_reversed)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.layout_capacity", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data", required=True, help="shapes benchmark root")
    p.add_argument(
        "--init", default="models/bundled/default", help="exported model, checkpoint or none"
    )
    p.add_argument("--paths", default="", help="caption paths to add, comma-separated")
    p.add_argument("--preset", default="shapes-32-cpu", help="G's config with --init none")
    p.add_argument("--num", type=int, default=8000, help="train images read (about 4 in 10 count)")
    p.add_argument("--val-num", type=int, default=2000, help="val images read")
    p.add_argument("--captions", choices=tuple(TEMPLATES), default="relation")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure", nargs="+", help="only score these models or checkpoints")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from models.artifacts import ArtifactError
    from training.data.base import DatasetError
    from training.faults import RunError
    from training.metrics.sampling import EvaluationError

    try:
        result = run(args)
    except (ArtifactError, DatasetError, EvaluationError, OSError, RunError, ValueError) as error:
        p.exit(2, f"layout_capacity: {error}\n")
    print(
        f"real val images placed right: {result['real_right']:.3f} ({result['val_scenes']} scenes)"
    )
    for name, figures in result.get("models", {}).items():
        print(
            f"{name}: right {figures['right']:.3f}, follows the reversal {figures['follows']:.3f}"
        )
    if "after" in result:
        b, a = result["before"], result["after"]
        print(
            f"G from {result['init']} + paths {result['paths'] or 'none'}, {result['steps']} "
            f"steps of regression on {result['train_scenes']} train scenes (last loss "
            f"{result['last_loss']:.4f}): right {b['right']:.3f} -> {a['right']:.3f}, "
            f"follows {b['follows']:.3f} -> {a['follows']:.3f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
