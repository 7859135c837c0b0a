"""Can XMC-GAN's D learn which way round a scene is when that is all it is asked?

    python -m benchmarks.relation_capacity --data DATA [--steps 2000] [--coords] [--sentence-head]

A fresh discriminator of a preset is trained on real two-object train scenes with L_sent alone
(tau 0.1), each caption's relation-reversed version as one more candidate against its image
(the hard negative of `swap_negatives`, `training/experiments/losses.py`): no generator, no
adversarial term.
It then scores the val scenes with caption_probe's L_sent score (the share of scenes whose true
caption outscores the reversed one; 0.5 = cannot tell). Run it with and without `--coords` and
`--sentence-head` (DiscriminatorConfig.coords / sentence_head) to see which part of D limits
the relation, apart from the GAN's dynamics.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TEMPLATES = (0, 2)  # "a {c1} {s1} {rel} a {c2} {s2}" and its paraphrase


def scene_captions(
    records: list[Any], templates: tuple[int, ...] = TEMPLATES
) -> tuple[list[int], list[list[str]], list[list[str]]]:
    """The two-object scenes' indices, their captions (`templates`) and the reversed captions."""
    from training.shapes.scenes import INVERSE_RELATION, all_captions

    kept, true, reversed_ = [], [], []
    for index, record in enumerate(records):
        attributes = record.attributes
        if len(attributes["objects"]) != 2:
            continue
        flipped = {**attributes, "relation": INVERSE_RELATION[attributes["relation"]]}
        kept.append(index)
        true.append([all_captions(attributes)[t] for t in templates])
        reversed_.append([all_captions(flipped)[t] for t in templates])
    return kept, true, reversed_


def encoded(encoder: Any, captions: list[list[str]]) -> Any:
    """(N, len(TEMPLATES), D_s) sentence embeddings."""
    import torch

    flat = [c for row in captions for c in row]
    with torch.no_grad():
        parts = [encoder.encode(flat[i : i + 256]).sentence for i in range(0, len(flat), 256)]
    return torch.cat(parts).reshape(len(captions), len(TEMPLATES), -1)


def split_data(encoder: Any, data: str | Path, split: str, num: int | None, resolution: int):
    from training.metrics.sampling import load_split, real_images

    records = load_split(data, split, num, need_attributes=True)
    kept, true, reversed_ = scene_captions(records)
    images = real_images([records[i] for i in kept], resolution).float() / 255.0
    return images, encoded(encoder, true), encoded(encoder, reversed_)


def train_and_probe(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    import torch

    from models.config import get_preset
    from models.discriminator import Discriminator
    from models.text_encoder import TextEncoder
    from training.experiments.losses import sentence_contrastive_loss_with_negatives
    from training.metrics.sampling import EvaluationError

    preset = get_preset(args.preset)
    config = dataclasses.replace(
        preset.discriminator, coords=args.coords, sentence_head=args.sentence_head
    )
    encoder = TextEncoder.from_config(preset.text_encoder)
    train = split_data(encoder, args.data, "train", args.num, config.resolution)
    val = split_data(encoder, args.data, "val", None, config.resolution)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    discriminator = Discriminator(config)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    images, true, reversed_ = train
    if len(images) < max(args.batch_size, 2):
        raise EvaluationError(
            f"{len(images)} two-object train scenes in the first {args.num} images: fewer than "
            f"a batch of {args.batch_size}; read more with --num"
        )
    for _ in range(args.steps):
        index = torch.as_tensor(rng.sample(range(len(images)), args.batch_size))
        template = torch.as_tensor([rng.randrange(len(TEMPLATES)) for _ in index])
        out = discriminator(images[index], true[index, template])
        negatives = discriminator.sentence_projection(reversed_[index, template])
        every = torch.ones(len(index), dtype=torch.bool)  # every scene has a relation to reverse
        loss = sentence_contrastive_loss_with_negatives(
            out.features, out.sentence, negatives, every, 0.1
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    discriminator.eval()
    images, true, reversed_ = val
    shares = {}
    for t, name in enumerate(("caption", "paraphrase")):
        truth = sentence_scores(discriminator, images, true[:, t])
        other = sentence_scores(discriminator, images, reversed_[:, t])
        shares[name] = float((truth > other).float().mean())
    return {
        "preset": args.preset,
        "coords": args.coords,
        "sentence_head": args.sentence_head,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "train_scenes": len(train[0]),
        "val_scenes": len(images),
        "last_loss": float(loss.detach()),
        "relation_share": shares,
    }


def sentence_scores(discriminator: Any, images: Any, sentence: Any, chunk: int = 64) -> Any:
    """(N,) L_sent scores cos(phi(x_i), V e_i) of image i against sentence embedding i."""
    import torch

    from models.losses import l2_normalize

    parts = []
    with torch.no_grad():
        for start in range(0, images.shape[0], chunk):
            out = discriminator(images[start : start + chunk], sentence[start : start + chunk])
            parts.append((l2_normalize(out.features) * l2_normalize(out.sentence)).sum(1))
    return torch.cat(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.relation_capacity",
        description="Train a fresh D on real scenes with L_sent and relation-reversed hard "
        "negatives only, then score how often it ranks the true relation first on val.",
    )
    p.add_argument("--data", required=True, help="shapes benchmark root")
    p.add_argument("--preset", default="shapes-32-cpu")
    p.add_argument("--num", type=int, default=8000, help="train images read (half hold two)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--coords", action="store_true")
    p.add_argument("--sentence-head", action="store_true")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from training.data.base import DatasetError
    from training.metrics.sampling import EvaluationError

    try:
        result = train_and_probe(args)
    except (DatasetError, EvaluationError, OSError) as error:
        p.exit(2, f"relation_capacity: {error}\n")
    shares = result["relation_share"]
    print(
        f"D of {result['preset']} (coords {result['coords']}, sentence head "
        f"{result['sentence_head']}), {result['steps']} steps of {result['batch_size']} real "
        f"scenes ({result['train_scenes']} train scenes): true relation above the reversed one "
        f"on {result['val_scenes']} val scenes: caption {shares['caption']:.3f}, paraphrase "
        f"{shares['paraphrase']:.3f} (last loss {result['last_loss']:.3f})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
