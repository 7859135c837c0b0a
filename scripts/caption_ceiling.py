"""How much of the faithfulness score the captions make reachable, and a model's accuracy on the
checks its caption does and does not determine.

    python scripts/caption_ceiling.py DATA [--split val] [--num 1000] [--model DIR]

`xmc-eval faithfulness` draws one of an image's five captions (`pick_captions`, seed 0) and
checks the generated image against the scene. About half of the captions never name the
background, and the two-object template "{bg} background , a X and a Y" names no relation, so
no generator can pass those checks better than a guess (1/3 of backgrounds at best the most
common one; 1/2 of relations). The ceiling printed here assumes every determined check passes
and every undetermined one is guessed at that rate.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

RELATION_WORDS = ("left", "right", "above", "below")


def determined(attributes: dict, caption: str) -> dict[str, bool]:
    words = caption.split()
    return {
        "background": attributes["background"] in words,
        "relation": any(w in words for w in RELATION_WORDS),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--model", default=None, help="an artifact directory to split its scores")
    args = p.parse_args()

    from training.metrics.sampling import load_split, pick_captions

    records = load_split(args.data, args.split, args.num, need_attributes=True)
    scenes = [r.attributes or {} for r in records]  # need_attributes: every record has them
    captions = pick_captions(records, 0)
    known = [determined(s, c) for s, c in zip(scenes, captions, strict=True)]
    n = len(records)
    pairs = [i for i, s in enumerate(scenes) if len(s["objects"]) == 2]
    prior = max(Counter(s["background"] for s in scenes).values()) / n
    bg_known = sum(int(k["background"]) for k in known) / n
    rel_known = sum(int(known[i]["relation"]) for i in pairs) / len(pairs)
    bg_max = bg_known + (1 - bg_known) * prior
    rel_max = rel_known + (1 - rel_known) * 0.5
    objects = sum(len(s["objects"]) for s in scenes)
    mean_max = (bg_max * n + 2 * objects + rel_max * len(pairs)) / (n + 2 * objects + len(pairs))
    print(
        f"{args.split}[:{n}]: background named in {bg_known:.3f} of captions -> max "
        f"{bg_max:.3f}; relation named in {rel_known:.3f} of two-object captions -> max "
        f"{rel_max:.3f}; colour and shape always named; reachable mean {mean_max:.3f}"
    )
    if args.model:
        import torch

        from models import XMCGANPipeline
        from training.metrics.sampling import generate
        from training.shapes.classifier import load_or_train
        from training.shapes.scorer import score_images

        torch.set_num_threads(1)
        pipe = XMCGANPipeline.from_pretrained(args.model, device="cpu")
        images = generate(pipe, captions, 0)
        classifier = load_or_train(pipe.resolution, data_root=args.data)
        per_image = score_images(
            images,
            scenes,
            pipe.resolution,
            shape_classifier=classifier,
            return_details=True,
        )["per_image"]
        for name in ("background", "relation"):
            for state in (True, False):
                hits = [
                    c[name][0]
                    for c, k in zip(per_image, known, strict=True)
                    if c[name] and k[name] == state
                ]
                if hits:
                    print(
                        f"  {name:10s} {'named' if state else 'not named':9s}: "
                        f"{sum(hits) / len(hits):.3f} of {len(hits)}"
                    )


if __name__ == "__main__":
    main()
