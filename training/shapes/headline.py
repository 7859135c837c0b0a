"""The README's captions, and the headline count the model card gives: how many of 16 seeds
draw "a red circle above a blue square" right (`benchmarks.flip_probe` prints it too)."""

from __future__ import annotations

from typing import Any

HEADLINE = "a red circle above a blue square"
HEADLINE_SEEDS = tuple(range(16))
# The scorer needs a background; the headline names none, so its check is never counted.
HEADLINE_SCENE: dict[str, Any] = {
    "background": "black",
    "relation": "above",
    "objects": [
        {"shape": "circle", "color": "red", "size": "large", "bbox": [0, 0, 1, 1]},
        {"shape": "square", "color": "blue", "size": "large", "bbox": [0, 0, 1, 1]},
    ],
}

# the README's two-object captions and two of its one-object ones
README_CAPTIONS = (
    HEADLINE,
    "a green triangle left of a yellow circle on a black background",
    "a blue square",
    "a red circle",
)


def generate_images(pipeline: Any, captions: list[str], seeds: list[int], batch: int) -> Any:
    """(N, 3, R, R) uint8 images, caption i with z seed seeds[i]."""
    import torch

    from models.images import to_uint8

    rows = []
    for start in range(0, len(captions), batch):
        features = pipeline.encode_text(captions[start : start + batch])
        rows.append(to_uint8(pipeline.generate(features, seeds[start : start + batch])))
    return torch.cat(rows)


def headline_count(pipeline: Any, classifier: Any) -> dict[str, Any]:
    """How many of the headline caption's 16 seeds pass every check it names, binding, and
    the relation."""
    from training.shapes.scorer import score_images

    count = len(HEADLINE_SEEDS)
    images = generate_images(pipeline, [HEADLINE] * count, list(HEADLINE_SEEDS), count)
    checks = score_images(
        images,
        [HEADLINE_SCENE] * count,
        pipeline.resolution,
        shape_classifier=classifier,
        return_details=True,
        captions=[HEADLINE] * count,
    )["per_image"]
    return {
        "caption": HEADLINE,
        "seeds": list(HEADLINE_SEEDS),
        "right": sum(c["whole"][0] for c in checks),
        "binding": sum(c["binding"][0] for c in checks),
        "relation": sum(c["relation"][0] for c in checks),
    }
