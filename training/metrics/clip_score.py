"""CLIP R-precision: rank each image's true caption against 99 captions of other images with a
local `CLIPModel` (the AttnGAN / XMC-GAN protocol)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.images import to_pil
from training.metrics.fid import MetricInputError


def r_precision(
    image_features: torch.Tensor, text_features: torch.Tensor, candidates: torch.Tensor
) -> float:
    """Share of images whose true caption beats every distractor.

    image_features (N, D); text_features (M, D) for every caption in play; candidates
    (N, K) indices into text_features, the true caption in column 0. Cosine similarity;
    a tie with a distractor counts as a miss.
    """
    images = nn.functional.normalize(image_features.float(), dim=-1)
    texts = nn.functional.normalize(text_features.float(), dim=-1)
    scores = torch.einsum("nd,nkd->nk", images, texts[candidates])  # (N, K)
    return (scores[:, 0] > scores[:, 1:].max(dim=1).values).float().mean().item()


def candidate_captions(
    true_captions: Sequence[str],
    owners: Sequence[int],
    pool: Sequence[tuple[int, str]],
    count: int = 100,
    seed: int = 0,
) -> tuple[list[str], torch.Tensor]:
    """For image i: its caption, then count - 1 captions of other images with other text.

    pool: (image id, caption) of every caption of the split. Returns the distinct texts
    and (N, count) indices into them.
    """
    texts: dict[str, int] = {}
    rows = []
    for index, (caption, owner) in enumerate(zip(true_captions, owners, strict=True)):
        rng = random.Random(f"r-precision/{seed}/{index}")
        others = sorted({text for image_id, text in pool if image_id != owner and text != caption})
        if len(others) < count - 1:
            raise MetricInputError(
                f"R-precision needs {count - 1} distractor captions, the split "
                f"offers {len(others)} for image {owner}"
            )
        row = [caption] + rng.sample(others, count - 1)
        rows.append([texts.setdefault(text, len(texts)) for text in row])
    return list(texts), torch.tensor(rows)


def clip_encoders(
    path: str | Path, device: str | torch.device = "cpu", batch_size: int = 64
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[list[str]], torch.Tensor]]:
    """(encode images (N, 3, H, W) in [0, 1], encode captions) of a local CLIP checkpoint."""
    from transformers import CLIPModel, CLIPProcessor

    if not Path(path).is_dir():
        raise MetricInputError(f"CLIP checkpoint folder not found: {path}")
    # transformers' stubs type `to` (wrapped by a decorator) as taking the model itself
    model = CLIPModel.from_pretrained(str(path)).to(device).eval()  # type: ignore[arg-type]
    processor = CLIPProcessor.from_pretrained(str(path))
    max_length = model.config.text_config.max_position_embeddings  # 77 for OpenAI's CLIP

    def pooled(output: Any) -> torch.Tensor:
        # transformers >= 5 returns a model output whose pooler_output is the projection
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    @torch.no_grad()
    def encode_images(images: torch.Tensor) -> torch.Tensor:
        rows = []
        for batch in images.split(batch_size):
            inputs = processor(images=to_pil(batch), return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(device)
            rows.append(pooled(model.get_image_features(pixel_values=pixel_values)))
        return torch.cat(rows).cpu()

    @torch.no_grad()
    def encode_texts(captions: list[str]) -> torch.Tensor:
        rows = []
        for start in range(0, len(captions), batch_size):
            inputs = processor(
                text=captions[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            rows.append(
                pooled(
                    model.get_text_features(
                        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                    )
                )
            )
        return torch.cat(rows).cpu()

    return encode_images, encode_texts


def clip_r_precision(
    images: torch.Tensor,
    true_captions: Sequence[str],
    owners: Sequence[int],
    pool: Sequence[tuple[int, str]],
    clip_path: str | Path,
    device: str | torch.device = "cpu",
    count: int = 100,
    seed: int = 0,
) -> float:
    """CLIP R-precision: 1 true caption among `count` (the AttnGAN/XMC-GAN protocol)."""
    encode_images, encode_texts = clip_encoders(clip_path, device)
    texts, candidates = candidate_captions(true_captions, owners, pool, count, seed)
    return r_precision(encode_images(images), encode_texts(texts), candidates)
