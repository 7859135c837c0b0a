"""Swap-negative captions (experiments.swap_negatives; not in the XMC-GAN paper).

XMC-GAN's contrastive losses rank each image's caption above the batch's other captions. Those
almost never differ from it only in a relation or in which object has which colour, so the
discriminator is never asked to tell "a red circle left of a blue square" from "a red circle
right of a blue square" or "a blue circle left of a red square" (benchmarks.caption_probe
measures it), and the generator gets no signal for either. A swap negative is the caption
with one such edit, scored against its own image as one more candidate:

- relation: every relation word replaced by its opposite (left/right, above/below,
  over/under, top/bottom);
- colours: the first two different colour words exchanged.

Each caption gets one of the edits it allows, drawn at random; a caption that allows neither
gets none. The edits are plain word swaps, so they apply to COCO captions as well.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

OPPOSITES: dict[str, str] = {
    "left": "right",
    "right": "left",
    "above": "below",
    "below": "above",
    "over": "under",
    "under": "over",
    "top": "bottom",
    "bottom": "top",
}
COLOUR_WORDS: frozenset[str] = frozenset(
    "red orange yellow green cyan blue purple pink brown black white gray grey".split()
)
NEGATIVES_STREAM = 1000  # derived_seed's last part for them (the noise uses 0 .. d_steps - 1)
_WORD = re.compile(r"[A-Za-z]+")


def relation_flipped(caption: str) -> str | None:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = OPPOSITES.get(word.lower())
        if other is None:
            return word
        return other.capitalize() if word[0].isupper() else other

    flipped = _WORD.sub(swap, caption)
    return flipped if flipped != caption else None


def colours_exchanged(caption: str) -> str | None:
    found: list[re.Match[str]] = []
    for match in _WORD.finditer(caption):
        word = match.group(0).lower()
        if word in COLOUR_WORDS and all(word != m.group(0).lower() for m in found):
            found.append(match)
            if len(found) == 2:
                break
    if len(found) < 2:
        return None
    first, second = found
    return (
        caption[: first.start()]
        + second.group(0)
        + caption[first.end() : second.start()]
        + first.group(0)
        + caption[second.end() :]
    )


def swap_negative(caption: str, rng: random.Random) -> str | None:
    """The caption with its relation reversed or two of its colours exchanged (one of the
    edits it allows, drawn with `rng`), or None when it allows neither."""
    edits = [edit for edit in (relation_flipped(caption), colours_exchanged(caption)) if edit]
    return rng.choice(edits) if edits else None


def encode_negatives(
    encoder: Any, captions: Sequence[str], seed: int, device: Any, parts: Sequence[slice]
) -> list[tuple[Any, Any]]:
    """Each caption's swap negative, encoded, cut into the step's sub-batches: per part,
    (TextFeatures (n, ...), valid (n,) bool); a caption with nothing to edit stands in for
    itself, marked not valid."""
    import torch

    rng = random.Random(seed)
    edited = [swap_negative(caption, rng) for caption in captions]
    features = encoder.encode([e or c for e, c in zip(edited, captions, strict=True)], device)
    valid = torch.tensor([e is not None for e in edited], device=device)
    rows = list(range(len(captions)))
    return [(features.select(rows[p]), valid[p]) for p in parts]
