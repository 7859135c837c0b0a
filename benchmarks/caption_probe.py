"""What a trained D can tell apart: `python -m benchmarks.caption_probe RUN --data DATA`.

XMC-GAN's generator learns what a caption says only through the discriminator: the projection
term of D's logit and the contrastive losses L_sent and L_word all score a caption against an
image with D's features. If D cannot tell a caption from one with its relation reversed, no
loss pushes G to place the objects as the caption says. On the real images of a split's
two-object scenes, this script scores each scene's caption ("a red circle left of a blue
square") against edited versions of it:

  relation    the relation reversed ("... right of a blue square"): a different scene
  binding     the two objects' colours exchanged ("a blue circle left of a red square"): a
              different scene with the same words
  shape_binding  the two objects' shapes exchanged ("a red square left of a blue circle"):
              each colour on the other's shape, the binding error the generators make
  colour      the first object's colour replaced by one not in the scene (a control)
  shape       the first object's shape replaced by another (a control)
  paraphrase  the same scene said the other way round ("a blue square right of a red
              circle"): a faithful scorer ranks it at chance against the caption (0.5)

For each edit it prints how often the true caption scores above the edited one on the real
image, with the sentence score of L_sent (cos(phi(x), V e_s)) and with the word-region score
S_word of L_word, for the run's discriminator and for an untrained one (the floor), and the
frozen text encoder's cosine between the two captions' sentence embeddings.

It also measures how much of the relation edit a caption score *linear in the sentence
embedding* (as cos(phi(x), V e_s) is) can use at all. The caption and its paraphrase describe the
same scene, so a score must rank each above its own relation-reversed version. With
d1 = e(caption) - e(reversed) and d2 = e(paraphrase) - e(reversed paraphrase), a linear score
gains w.(d1 + d2) over both pairs: the share |d1 + d2| / (|d1| + |d2|) is 0 for a bag-of-words
embedding (d2 = -d1: "left" and "right" merely trade places) and 1 when the two agree.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EDITS = ("relation", "binding", "shape_binding", "colour", "shape", "paraphrase")
CAPTION = 0  # TWO_OBJECT_TEMPLATES[0]: "a {color1} {shape1} {rel} a {color2} {shape2}"
PARAPHRASE = 2  # "a {color2} {shape2} {rel_inv} a {color1} {shape1}"


def edited_captions(attributes: dict[str, Any], rng: random.Random) -> dict[str, str] | None:
    """The caption of a two-object scene and each edit of it (an edit that would name an
    unseen colour-shape pair, or change nothing, is left out); None for a one-object scene."""
    from training.shapes.scenes import (
        HELDOUT_PAIRS,
        INVERSE_RELATION,
        PALETTE_OBJECTS,
        SHAPES,
        all_captions,
    )

    if len(attributes["objects"]) != 2:
        return None
    first, second = attributes["objects"]

    def caption(objects: list[dict[str, Any]], relation: str) -> str:
        return all_captions({**attributes, "objects": objects, "relation": relation})[CAPTION]

    def seen(*objects: dict[str, Any]) -> bool:
        return all((obj["color"], obj["shape"]) not in HELDOUT_PAIRS for obj in objects)

    relation = attributes["relation"]
    out = {"caption": caption([first, second], relation)}
    out["relation"] = caption([first, second], INVERSE_RELATION[relation])
    if first["color"] != second["color"] and first["shape"] != second["shape"]:
        a, b = {**first, "color": second["color"]}, {**second, "color": first["color"]}
        if seen(a, b):
            out["binding"] = caption([a, b], relation)
        a, b = {**first, "shape": second["shape"]}, {**second, "shape": first["shape"]}
        if seen(a, b):
            out["shape_binding"] = caption([a, b], relation)
    colours = [c for c in PALETTE_OBJECTS if c not in (first["color"], second["color"])]
    colours = [c for c in colours if seen({"color": c, "shape": first["shape"]})]
    out["colour"] = caption([{**first, "color": rng.choice(colours)}, second], relation)
    shapes = [s for s in SHAPES if s != first["shape"] and seen({**first, "shape": s})]
    if shapes:
        out["shape"] = caption([{**first, "shape": rng.choice(shapes)}, second], relation)
    out["paraphrase"] = all_captions(attributes)[PARAPHRASE]
    reversed_scene = {**attributes, "relation": INVERSE_RELATION[relation]}
    out["reversed paraphrase"] = all_captions(reversed_scene)[PARAPHRASE]  # not an edit: a helper
    return out


def linear_share(caption: Any, reversed_: Any, paraphrase: Any, reversed_paraphrase: Any) -> float:
    """Mean over scenes of |d1 + d2| / (|d1| + |d2|) (module doc); each argument (N, D)."""
    d1, d2 = caption - reversed_, paraphrase - reversed_paraphrase
    return float(((d1 + d2).norm(dim=1) / (d1.norm(dim=1) + d2.norm(dim=1))).mean())


def scores(discriminator: Any, images: Any, features: Any, chunk: int = 16) -> tuple[Any, Any]:
    """(N,) sentence scores cos(phi(x_i), V e_i) and (N,) word-region scores S_word(x_i, t_i)
    of image i against caption i (features: TextFeatures of N captions)."""
    import torch

    from models.losses import l2_normalize, word_region_scores

    sentence, word = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], chunk):
            part = slice(start, start + chunk)
            out = discriminator(images[part], features.sentence[part])
            cos = (l2_normalize(out.features) * l2_normalize(out.sentence)).sum(1)  # (b,)
            matrix = word_region_scores(out.regions, features.words[part], features.mask[part])
            sentence.append(cos)
            word.append(matrix.diagonal())  # caption i against image i
    return torch.cat(sentence), torch.cat(word)


def _networks(state: dict[str, Any], seed: int) -> tuple[Any, Any, Any]:
    """The checkpoint's D, an untrained D of the same config (from `seed`), its text encoder."""
    import torch

    from models.config import DiscriminatorConfig, TextEncoderConfig, config_from_dict
    from models.discriminator import Discriminator
    from models.text_encoder import TextEncoder

    described = state["config"]
    d_config = config_from_dict(DiscriminatorConfig, described["discriminator"])
    trained = Discriminator(d_config)
    trained.load_state_dict(state["discriminator"])
    torch.manual_seed(seed)
    untrained = Discriminator(d_config)
    text = config_from_dict(TextEncoderConfig, described["text_encoder"])
    return trained, untrained, TextEncoder.from_config(text)


def _two_object_scenes(
    data: str | Path, split: str, num: int, seed: int
) -> tuple[list[Any], list[dict[str, str]]]:
    """The split's two-object records among its first `num`, and each one's edited captions."""
    from training.faults import RunError
    from training.metrics.sampling import load_split

    rng = random.Random(f"caption_probe/{seed}")
    kept, edits = [], []
    for record in load_split(data, split, num, need_attributes=True):
        captions = edited_captions(record.attributes or {}, rng)  # need_attributes: never {}
        if captions is not None:
            kept.append(record)
            edits.append(captions)
    if not kept:
        raise RunError(f"split {split!r} of {data} holds no two-object scene")
    return kept, edits


def probe(
    run: str | Path, data: str | Path, split: str = "val", num: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The table's figures: per edit, the share of scenes whose true caption outscores the
    edit, for the run's D and an untrained one, and the text encoder's mean cosine."""
    from training.checkpoint import load_run_or_file

    return probe_state(load_run_or_file(run), data, split, num, seed)


def probe_state(
    state: dict[str, Any], data: str | Path, split: str = "val", num: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """`probe` of a checkpoint already loaded (`training.checkpoint.load_checkpoint`)."""
    import torch

    from training.metrics.sampling import real_images

    trained, untrained, encoder = _networks(state, seed)
    kept, edits = _two_object_scenes(data, split, num, seed)
    images = real_images(kept, trained.config.resolution).float() / 255.0
    truth = encoder.encode([e["caption"] for e in edits])
    discriminators = {"trained": trained.eval(), "untrained": untrained.eval()}
    base = {name: scores(d, images, truth) for name, d in discriminators.items()}

    result: dict[str, Any] = {
        "step": state["step"],
        "images_seen": state["images_seen"],
        "split": split,
        "scenes": len(kept),
        "edits": {},
    }
    sentences = {}  # the relation and paraphrase edits hold every scene: rows in scene order
    for edit in EDITS:
        rows = [i for i, e in enumerate(edits) if edit in e]
        if not rows:  # e.g. no scene whose exchanged shapes would name seen pairs
            continue
        other = encoder.encode([edits[i][edit] for i in rows])
        sentences[edit] = other.sentence
        picked = torch.as_tensor(rows)
        row: dict[str, Any] = {
            "scenes": len(rows),
            "example": f"{edits[rows[0]]['caption']} -> {edits[rows[0]][edit]}",
            "text_cosine": float(
                torch.nn.functional.cosine_similarity(truth.sentence[picked], other.sentence).mean()
            ),
        }
        for name, d in discriminators.items():
            sentence, word = scores(d, images[picked], other)
            row[name] = {
                "sentence": float((base[name][0][picked] > sentence).float().mean()),
                "word": float((base[name][1][picked] > word).float().mean()),
            }
        result["edits"][edit] = row
    reversed_ = encoder.encode([e["reversed paraphrase"] for e in edits]).sentence
    pair = sentences["relation"], sentences["paraphrase"]
    result["relation_linear_share"] = linear_share(truth.sentence, *pair, reversed_)
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"step {result['step']:,} ({result['images_seen']:,} images seen); {result['scenes']} "
        f"two-object scenes of {result['split']} (real images)",
        "share of scenes whose true caption scores above the edited one (0.5 = cannot tell):",
        "",
        "| edit | scenes | L_sent score, D | L_word score, D | untrained D (sent / word) "
        "| text cosine |",
        "|---|---|---|---|---|---|",
    ]
    for edit, row in result["edits"].items():
        t, u = row["trained"], row["untrained"]
        lines.append(
            f"| {edit} | {row['scenes']} | {t['sentence']:.3f} | {t['word']:.3f} | "
            f"{u['sentence']:.2f} / {u['word']:.2f} | {row['text_cosine']:.3f} |"
        )
    lines.append("")
    lines += [f"{edit}: {row['example']}" for edit, row in result["edits"].items()]
    lines.append(
        f"relation, text side: a score linear in e_s can use {result['relation_linear_share']:.3f} "
        "of the edit's embedding difference (0 = bag of words, 1 = all of it)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.caption_probe",
        description="How well a training run's discriminator tells a shapes caption from the "
        "same caption with its relation reversed, its colours exchanged, one colour or shape "
        "replaced, or paraphrased, on real two-object scenes.",
    )
    p.add_argument("run", help="a run directory (its newest checkpoint) or one checkpoint file")
    p.add_argument("--data", required=True, help="shapes benchmark root")
    p.add_argument("--split", default="val")
    p.add_argument(
        "--num", type=int, default=1000, help="scenes read (about half have two objects)"
    )
    p.add_argument("--seed", type=int, default=0, help="the untrained D's and the edits' seed")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from training.checkpoint import CheckpointError
    from training.data.base import DatasetError
    from training.faults import RunError
    from training.metrics.sampling import EvaluationError

    try:
        result = probe(args.run, args.data, args.split, args.num, args.seed)
    except (RunError, CheckpointError, DatasetError, EvaluationError, OSError) as error:
        p.exit(2, f"caption_probe: {error}\n")
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
