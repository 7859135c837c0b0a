"""The paper's evaluation protocol in one call: FID and KID (CLIP score with a CLIP checkpoint)
on N = 30,000 images generated from COCO val2014 captions.

What it does, exactly (docs/evaluation.md compares it with the papers):
- images: `num` distinct val images drawn without replacement by an RNG seeded with
  `seed` (all of them when `num` is the split's size), one caption each (drawn with
  `seed` and the image id, `sampling.pick_captions`), generated image i with z seed
  `seed * 1_000_003 + i` at the model's resolution R;
- reference: the same `num` real images, each resized to R x R as the training loader does
  (`coco.resize_image`: bilinear, the whole image, no crop), to uint8;
- features: both sets through the FID Inception-v3 (TF 2015-12-05 graph,
  `inception.FIDInceptionV3`), which resizes R -> 299 like TF1's bilinear resize;
- FID from the (mu, sigma) of the two feature sets (float64); KID as the unbiased MMD^2
  with the cubic polynomial kernel over `kid_subsets` random subsets of `kid_subset_size`;
  CLIP score as 100 x mean max(cos(image, caption), 0) (Hessel et al. 2021);
- the reference features and (mu, sigma) are computed once and cached in `cache_dir` under a
  name keyed by the data (root, split, annotations file size and mtime, image ids),
  the resolution, the count and the feature network.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data.base import CaptionedImage, load_rgb, resize_image
from training.metrics.fid import MetricInputError
from training.metrics.sampling import EvaluationError, load_split, pick_captions

PAPER_NUM_IMAGES = 30_000  # XMC-GAN (and DF-GAN, GALIP) on COCO: 30,000 generated images


@dataclass(frozen=True)
class ProtocolConfig:
    split: str = "val2014"
    num: int = PAPER_NUM_IMAGES
    seed: int = 0
    batch_size: int = 50
    kid_subsets: int = 100
    kid_subset_size: int = 1000


def protocol_records(data_root: str | Path, config: ProtocolConfig) -> list[CaptionedImage]:
    """`num` distinct images of the split, drawn with `seed`, in id order."""
    records = load_split(data_root, config.split)
    if config.num < 2 or config.num > len(records):
        raise EvaluationError(
            f"--num must be between 2 and the {len(records)} images of {config.split}, "
            f"got {config.num}"
        )
    chosen = sorted(
        random.Random(f"protocol/{config.seed}").sample(range(len(records)), config.num)
    )
    return [records[i] for i in chosen]


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def _features(feature: nn.Module, images: torch.Tensor) -> torch.Tensor:
    parameter = next(feature.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return feature(images.to(device)).double().cpu()  # (B, D)


def real_batch(records: Sequence[CaptionedImage], resolution: int) -> torch.Tensor:
    """(B, 3, R, R) uint8: the training loader's resize (bilinear, whole image)."""
    rows = [
        torch.from_numpy(np.asarray(resize_image(load_rgb(r.path), resolution, False)).copy())
        for r in records
    ]
    return torch.stack(rows).permute(0, 3, 1, 2)


def cache_file(
    cache_dir: str | Path,
    data_root: str | Path,
    records: Sequence[CaptionedImage],
    config: ProtocolConfig,
    resolution: int,
    feature_name: str,
) -> Path:
    """Where the reference statistics of exactly this data, size and network are cached."""
    annotations = Path(data_root) / "annotations" / f"captions_{config.split}.json"
    stat = annotations.stat()
    key = json.dumps(
        [
            str(Path(data_root).resolve()),
            config.split,
            stat.st_size,
            int(stat.st_mtime),
            [r.image_id for r in records],
            resolution,
            feature_name,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = f"fid_ref_{config.split}_{resolution}px_{len(records)}_{digest}.npz"
    return Path(cache_dir) / name


def reference_features(
    records: Sequence[CaptionedImage],
    resolution: int,
    feature: nn.Module,
    path: Path,
    batch_size: int,
    progress: bool = False,
) -> tuple[torch.Tensor, bool]:
    """(N, D) features of the real images, from `path` if cached; (features, was_cached)."""
    from tqdm import tqdm

    if path.is_file():
        with np.load(path) as cached:
            return torch.from_numpy(cached["features"]).double(), True
    rows = [
        _features(feature, real_batch(chunk, resolution))
        for chunk in tqdm(
            list(_batches(records, batch_size)), desc="reference", disable=not progress
        )
    ]
    features = torch.cat(rows)
    mu, sigma = statistics(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, features=features.float().numpy(), mu=mu.numpy(), sigma=sigma.numpy())
    temporary.replace(path)  # atomic: a half-written cache is never read
    return features, False


def statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu (D,), sigma (D, D)) of (N, D) features, float64, sigma with N - 1."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def frechet_from_statistics(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """|mu1 - mu2|^2 + tr(s1 + s2 - 2 (s1 s2)^1/2); the trace of the root from eigenvalues."""
    eigenvalues = torch.linalg.eigvals(sigma1 @ sigma2)  # of a product of PSD matrices: >= 0
    root_trace = eigenvalues.real.clamp(min=0).sqrt().sum()
    difference = (mu1 - mu2).square().sum()
    return float(difference + sigma1.trace() + sigma2.trace() - 2 * root_trace)


def kernel_distance_from_features(
    real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2, kernel (x.y / D + 1)^3 (Binkowski 2018)."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise MetricInputError(f"KID needs at least 2 images per set, got {size}")
    generator = torch.Generator().manual_seed(seed)
    dims = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=generator)[:size]].double()
        y = fake[torch.randperm(len(fake), generator=generator)[:size]].double()
        k_xx, k_yy = (x @ x.T / dims + 1) ** 3, (y @ y.T / dims + 1) ** 3
        k_xy = (x @ y.T / dims + 1) ** 3
        off = size * (size - 1)
        mmd = (
            (k_xx.sum() - k_xx.trace()) / off + (k_yy.sum() - k_yy.trace()) / off - 2 * k_xy.mean()
        )
        values.append(float(mmd))
    return float(np.mean(values)), float(np.std(values))


def _clip_score(
    encode_images: Callable, encode_texts: Callable, images: torch.Tensor, captions: list[str]
) -> torch.Tensor:
    """(B,) 100 x max(cos, 0) of each image with its caption."""
    image_features = nn.functional.normalize(encode_images(images.float() / 255), dim=-1)
    text_features = nn.functional.normalize(encode_texts(captions), dim=-1)
    return 100 * (image_features * text_features).sum(-1).clamp(min=0)


def evaluate_protocol(
    pipeline: Any,
    data_root: str | Path,
    feature: nn.Module,
    config: ProtocolConfig = ProtocolConfig(),
    *,
    cache_dir: str | Path,
    feature_name: str,
    clip_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """FID, KID (and CLIP score) of `pipeline` under the protocol of the module doc."""
    from tqdm import tqdm

    from training.metrics.sampling import generate

    records = protocol_records(data_root, config)
    resolution = pipeline.resolution
    path = cache_file(cache_dir, data_root, records, config, resolution, feature_name)
    real, cached = reference_features(
        records, resolution, feature, path, config.batch_size, progress
    )
    captions = pick_captions(records, config.seed)
    clip = None
    if clip_path is not None:
        from training.metrics.clip_score import clip_encoders

        clip = clip_encoders(clip_path, pipeline.device)
    fake_rows, clip_rows, first = [], [], None
    for start in tqdm(
        range(0, len(records), config.batch_size), desc="generate", disable=not progress
    ):
        chunk = captions[start : start + config.batch_size]
        images = generate(pipeline, chunk, config.seed, len(chunk), first_index=start)
        first = images if first is None else first
        fake_rows.append(_features(feature, images))
        if clip is not None:
            clip_rows.append(_clip_score(*clip, images, list(chunk)))
    assert first is not None  # protocol_records returns 2 or more records
    fake = torch.cat(fake_rows)
    kid_mean, kid_std = kernel_distance_from_features(
        real, fake, config.kid_subsets, config.kid_subset_size, config.seed
    )
    result: dict[str, Any] = {
        "model_id": pipeline.model_id,
        "protocol": {**config.__dict__, "resolution": resolution, "feature": feature_name},
        "num_images": len(records),
        "fid": frechet_from_statistics(*statistics(real), *statistics(fake)),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "reference_cache": str(path),
        "reference_was_cached": cached,
        "images": {"real": real_batch(records[:8], resolution), "generated": first[:8]},
    }
    if clip_rows and clip_path is not None:
        result["clip_score"] = float(torch.cat(clip_rows).mean())
        result["clip_checkpoint"] = Path(clip_path).name
    return result
