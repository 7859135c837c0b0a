"""Is a caption's relation in the frozen text features, and in what form a score can read it?

    python -m benchmarks.relation_text_probe --data DATA [--num 4000] [--epochs 40]

For each two-object scene the label says which way round the scene is: 1 when the object first
in (colour, shape) order is left of (or above) the other. A bag of words cannot tell: "a red
circle left of a blue square" and "a blue square left of a red circle" hold the same words and
opposite labels. Three probes learn the label from every caption of the train split's scenes
that names the relation (7 templates), and are scored on the val split's:

  sentence, linear   logistic regression on e_s, fitted to convergence: the form XMC-GAN's D
                     reads it in (L_sent and the projection logit score cos(phi(x), V e_s))
  sentence, MLP      one hidden layer on e_s: what a learned non-linear text head could read
  words, MLP         one hidden layer on the padded word features (T x D_w), positions kept

Accuracy 0.5 is chance. The three figures together say whether the relation is missing from the
frozen encoder (all at chance), present but not linearly in e_s (the MLPs above the linear
probe), or there for D to read (the linear probe high).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RELATION_TEMPLATES = (0, 1, 2, 4, 5, 6, 7)  # TWO_OBJECT_TEMPLATES that name the relation
FORWARD = {"left of": 1, "above": 1, "right of": 0, "below": 0}  # first object left / above


def labelled_captions(attributes: dict[str, Any]) -> tuple[list[str], int] | None:
    """A two-object scene's captions that name its relation, and its label (module doc)."""
    from training.shapes.scenes import all_captions

    if len(attributes["objects"]) != 2:
        return None
    first, second = attributes["objects"]
    if (first["color"], first["shape"]) == (second["color"], second["shape"]):
        return None  # two alike objects: no way round to tell
    forward = FORWARD[attributes["relation"]]
    in_order = (first["color"], first["shape"]) < (second["color"], second["shape"])
    captions = all_captions(attributes)
    return [captions[i] for i in RELATION_TEMPLATES], int(forward == in_order)


def features(encoder: Any, records: list[Any], batch: int = 256) -> dict[str, Any]:
    """Sentence embeddings (N, D), padded word features (N, T * D) and labels (N,)."""
    import torch

    captions, labels = [], []
    for record in records:
        kept = labelled_captions(record.attributes)
        if kept is not None:
            captions += kept[0]
            labels += [kept[1]] * len(kept[0])
    sentence, words = [], []
    with torch.no_grad():
        for start in range(0, len(captions), batch):
            out = encoder.encode(captions[start : start + batch])
            padded = out.words * out.mask.unsqueeze(-1)  # (b, T, D)
            length = encoder.config.max_length
            padded = torch.nn.functional.pad(padded, (0, 0, 0, length - padded.shape[1]))
            sentence.append(out.sentence)
            words.append(padded.flatten(1))
    return {
        "sentence": torch.cat(sentence),
        "words": torch.cat(words),
        "labels": torch.tensor(labels, dtype=torch.float32),
    }


def fit_probe(train: Any, labels: Any, hidden: int, epochs: int, seed: int) -> Any:
    """A logistic regression (hidden 0; L-BFGS to convergence, a small L2 penalty) or a
    one-hidden-layer MLP (AdamW, `epochs` passes); returns the logit function."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    x = (train - mean) / std
    bce = nn.functional.binary_cross_entropy_with_logits
    model: nn.Module
    if not hidden:
        linear = model = nn.Linear(train.shape[1], 1)
        lbfgs = torch.optim.LBFGS(model.parameters(), max_iter=1000, line_search_fn="strong_wolfe")

        def closure() -> Any:
            lbfgs.zero_grad()
            loss = bce(linear(x).squeeze(1), labels) + 1e-4 * linear.weight.square().sum()
            loss.backward()
            return loss

        lbfgs.step(closure)
    else:
        model = nn.Sequential(nn.Linear(train.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
        for _ in range(epochs):
            for index in torch.randperm(len(x)).split(256):
                loss = bce(model(x[index]).squeeze(1), labels[index])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    model.eval()
    return lambda inputs: model((inputs - mean) / std).squeeze(1)


def run_probes(
    data: str | Path, num: int, epochs: int, hidden: int = 256, seed: int = 0
) -> dict[str, Any]:
    """Val accuracy of each probe (module doc), and the sizes of the two caption sets."""
    import torch

    from models.config import TextEncoderConfig
    from models.text_encoder import TextEncoder
    from training.metrics.sampling import load_split

    encoder = TextEncoder.from_config(TextEncoderConfig())
    train = features(encoder, load_split(data, "train", num, need_attributes=True))
    val = features(encoder, load_split(data, "val", None, need_attributes=True))
    result: dict[str, Any] = {
        "encoder": encoder.config.name_or_path,
        "train_captions": len(train["labels"]),
        "val_captions": len(val["labels"]),
        "val_label_mean": float(val["labels"].mean()),
        "accuracy": {},
    }
    for name, key, width in (
        ("sentence, linear", "sentence", 0),
        ("sentence, MLP", "sentence", hidden),
        ("words, MLP", "words", hidden),
    ):
        probe = fit_probe(train[key], train["labels"], width, epochs, seed)
        with torch.no_grad():
            result["accuracy"][name] = {
                split: float(((probe(s[key]) > 0) == (s["labels"] > 0.5)).float().mean())
                for split, s in (("train", train), ("val", val))
            }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.relation_text_probe",
        description="Whether the frozen text encoder's features say which way round a "
        "two-object scene's relation is, linearly in e_s or only non-linearly.",
    )
    p.add_argument("--data", required=True, help="shapes benchmark root")
    p.add_argument("--num", type=int, default=4000, help="train images read (half hold two)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from training.data.base import DatasetError
    from training.metrics.sampling import EvaluationError

    try:
        result = run_probes(args.data, args.num, args.epochs, seed=args.seed)
    except (DatasetError, EvaluationError, OSError) as error:
        p.exit(2, f"relation_text_probe: {error}\n")
    ones = result["val_label_mean"]
    print(
        f"{result['encoder']}: {result['train_captions']} train / {result['val_captions']} val "
        f"captions naming the relation (val labels {result['val_label_mean']:.2f} ones: "
        f"the commoner label alone scores {max(ones, 1 - ones):.3f})\n\n"
        "| probe | train accuracy | val accuracy |\n|---|---|---|"
    )
    for name, row in result["accuracy"].items():
        print(f"| {name} | {row['train']:.3f} | {row['val']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
