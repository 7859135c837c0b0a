"""Faithfulness of a pipeline on the shapes benchmark (`xmc-eval faithfulness`'s measure).

Every image of a split (or fresh scenes of its distribution) is generated from one of its
captions and scored by the shape classifier and the attribute checks (`scorer`), beside the
real images (the ceiling) and an untrained generator of the same config (the floor), with the
whole-caption figures of `figures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.metrics.sampling import (
    EvaluationError,
    complete_captions,
    generate,
    pick_captions,
    real_images,
)
from training.shapes.classifier import load_or_train
from training.shapes.scorer import score_in_chunks
from training.shapes.sources import SceneSource, scene_records

__all__ = ["faithfulness", "untrained_pipeline"]


def untrained_pipeline(pipeline: Any, seed: int = 0) -> Any:
    """The same pipeline with a freshly initialised generator of the same config (the floor)."""
    from models import Generator, XMCGANPipeline

    with torch.random.fork_rng(devices=[]):
        # Any fixed seed would do; this one avoids the small seeds that test artifacts use.
        torch.manual_seed(1_000_003 + seed)
        generator = Generator(pipeline.generator.config)
    return XMCGANPipeline(
        generator,
        pipeline.text_encoder,
        device=pipeline.device,
        model_id=f"{pipeline.model_id}-untrained",
    )


def faithfulness(
    pipeline: Any,
    data_root: str | Path,
    split: str = "val",
    num: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    reference: bool = True,
    progress: bool = False,
    cache_dir: str | Path | None = None,
    return_images: bool = False,
    captions: str = "random",
    source: SceneSource | None = None,
) -> dict[str, Any]:
    """Faithfulness of `pipeline` on a shapes-benchmark split.

    captions "random": each image's caption drawn among its five, as the spec scores it (about
    half name no background, so even a perfect model cannot reach 1.0 on that check);
    "complete": a caption that names every scored attribute, so every check is determined.
    source: the split's own images (default) or fresh scenes of its distribution, all or
    only those with one or two objects (`SceneSource`).

    Returns {"generated": scores, "real": scores, "untrained": scores, ...}, each scores as
    `score_images` returns them, whole-caption figures included ("real" and "untrained" only
    with `reference`). With return_images, also "images": {"real", ...} uint8 tensors.
    Raises ShapeClassifierError before generating anything if the classifier misses 98%.
    """
    source = source or SceneSource()
    size = pipeline.resolution
    records, fresh_real = scene_records(data_root, split, num, source, size)
    classifier = load_or_train(size, cache_dir=cache_dir, data_root=data_root, progress=progress)
    attributes = [record.scene() for record in records]
    if captions not in ("random", "complete"):
        raise EvaluationError(f"--captions must be random or complete, got {captions!r}")
    texts = (complete_captions if captions == "complete" else pick_captions)(records, seed)
    images = {"generated": generate(pipeline, texts, seed, batch_size, progress)}
    if reference:
        images["real"] = real_images(records, size) if fresh_real is None else fresh_real
        floor = untrained_pipeline(pipeline, seed)
        images["untrained"] = generate(floor, texts, seed, batch_size, progress, "generate (floor)")
    result: dict[str, Any] = {
        "model_id": pipeline.model_id,
        "split": split,
        "resolution": size,
        "num_images": len(records),
        "seed": seed,
        "captions": captions,
        "fresh_seed": source.fresh_seed,
        "objects": source.objects,
        "shape_classifier_val_accuracy": classifier.val_accuracy,
    }
    for name, batch in images.items():
        result[name] = score_in_chunks(
            batch, attributes, size, classifier, progress, f"score {name}", texts=texts
        )
    if return_images:
        result["images"] = images
    return result
