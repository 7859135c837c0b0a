"""Swap-negative captions (experiments.swap_negatives; not in the XMC-GAN paper).

XMC-GAN's contrastive losses rank each image's caption above the batch's other captions. Those
almost never differ from it only in a relation or in which object has which colour, so the
discriminator is never asked to tell "a red circle left of a blue square" from "a red circle
right of a blue square" or "a blue circle left of a red square" (benchmarks.caption_probe
measures it), and the generator gets no signal for either. A swap negative is the caption
with one such edit, scored against its own image as one more candidate:

- relation: every relation word replaced by its opposite (left/right, above/below,
  over/under, top/bottom);
- colours: the first two different colour words exchanged;
- shapes (only when `experiments.swap_edits` names it): the first two different shape words
  exchanged, "a red circle above a blue square" -> "a red square above a blue circle", the
  drawing whose colours sit on each other's shapes;
- replace-shape (only when named): the first shape word replaced by the next in
  circle -> square -> triangle -> circle, "a red circle" -> "a red square": one object's shape
  wrong, an edit every caption that names a shape allows, one object or two.

Each caption gets one of the edits it allows among those the run names, drawn at random; a
caption that allows none gets none. The edits are plain word swaps, so they apply to COCO
captions as well.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
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
SHAPE_WORDS: frozenset[str] = frozenset("circle square triangle rectangle".split())
NEXT_SHAPE: dict[str, str] = {"circle": "square", "square": "triangle", "triangle": "circle"}
NEGATIVES_STREAM = 1000  # derived_seed's last part for them (the noise uses 0 .. d_steps - 1)
_WORD = re.compile(r"[A-Za-z]+")


def _same_case(word: str, other: str) -> str:
    """`other` capitalised as `word` is (a caption's first word)."""
    return other.capitalize() if word[0].isupper() else other


def relation_flipped(caption: str) -> str | None:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = OPPOSITES.get(word.lower())
        return word if other is None else _same_case(word, other)

    flipped = _WORD.sub(swap, caption)
    return flipped if flipped != caption else None


def colours_exchanged(caption: str) -> str | None:
    return _exchanged(caption, COLOUR_WORDS)


def shapes_exchanged(caption: str) -> str | None:
    return _exchanged(caption, SHAPE_WORDS)


def shape_replaced(caption: str) -> str | None:
    match = next((m for m in _WORD.finditer(caption) if m.group(0).lower() in NEXT_SHAPE), None)
    if match is None:
        return None
    other = _same_case(match.group(0), NEXT_SHAPE[match.group(0).lower()])
    return caption[: match.start()] + other + caption[match.end() :]


def _exchanged(caption: str, vocabulary: frozenset[str]) -> str | None:
    """The caption with its first two different words of `vocabulary` exchanged, or None."""
    found: list[re.Match[str]] = []
    for match in _WORD.finditer(caption):
        word = match.group(0).lower()
        if word in vocabulary and all(word != m.group(0).lower() for m in found):
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


EDITS: dict[str, Callable[[str], str | None]] = {
    "relation": relation_flipped,
    "colours": colours_exchanged,
    "shapes": shapes_exchanged,
    "replace-shape": shape_replaced,
}
DEFAULT_EDITS: tuple[str, ...] = ("relation", "colours")


def swap_negative(
    caption: str, rng: random.Random, edits: Sequence[str] = DEFAULT_EDITS
) -> str | None:
    """The caption with one of the `edits` (names of EDITS) it allows, drawn with `rng`; None
    when it allows none."""
    allowed = [edited for edited in (EDITS[name](caption) for name in edits) if edited]
    return rng.choice(allowed) if allowed else None


def encode_negatives(
    encoder: Any,
    captions: Sequence[str],
    seed: int,
    device: Any,
    parts: Sequence[slice],
    edits: Sequence[str] = DEFAULT_EDITS,
) -> list[tuple[Any, Any]]:
    """Each caption's swap negative, encoded, cut into the step's sub-batches: per part,
    (TextFeatures (n, ...), valid (n,) bool); a caption with nothing to edit stands in for
    itself, marked not valid."""
    import torch

    rng = random.Random(seed)
    edited = [swap_negative(caption, rng, edits) for caption in captions]
    features = encoder.encode([e or c for e, c in zip(edited, captions, strict=True)], device)
    valid = torch.tensor([e is not None for e in edited], device=device)
    rows = list(range(len(captions)))
    return [(features.select(rows[p]), valid[p]) for p in parts]
