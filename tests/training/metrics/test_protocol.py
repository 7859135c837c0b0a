"""The evaluation protocol on a small synthetic COCO-layout val2014 with a tiny feature net."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.fakes import TinyFeatures
from training import evaluate
from training.metrics import protocol
from training.metrics.protocol import ProtocolConfig, evaluate_protocol


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """One intra-op thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def coco_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 val2014 images of mixed sizes and modes, two captions each."""
    root = tmp_path_factory.mktemp("coco") / "coco"
    (root / "val2014").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for n in range(1, 13):
        name = f"COCO_val2014_{n:012d}.jpg"
        pixels = rng.integers(0, 256, (24 + 4 * n, 40, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        (image.convert("L") if n % 4 == 0 else image).save(root / "val2014" / name)
        images.append({"id": n, "file_name": name})
        annotations += [
            {"id": 10 * n + k, "image_id": n, "caption": f"photo {n} number {k}"} for k in (0, 1)
        ]
    (root / "annotations").mkdir()
    payload = {"images": images, "annotations": annotations}
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(payload))
    return root


class CountingFeatures(TinyFeatures):
    calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        CountingFeatures.calls += len(images)
        return super().forward(images)


def test_protocol_computes_and_caches_the_reference(
    tiny_artifact: Path, coco_val: Path, tmp_path: Path
) -> None:
    from models import XMCGANPipeline

    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    config = ProtocolConfig(num=10, batch_size=4, kid_subsets=5, kid_subset_size=8)
    feature = CountingFeatures()
    run = {"cache_dir": tmp_path / "cache", "feature_name": "tiny"}
    first = evaluate_protocol(pipeline, coco_val, feature, config, **run)
    assert CountingFeatures.calls == 20  # 10 real + 10 generated
    assert first["num_images"] == 10 and not first["reference_was_cached"]
    assert first["fid"] > 0 and np.isfinite(first["kid_mean"])
    cache = Path(first["reference_cache"])
    assert cache.name.startswith("fid_ref_val2014_32px_10_") and cache.is_file()
    second = evaluate_protocol(pipeline, coco_val, feature, config, **run)
    assert CountingFeatures.calls == 30  # the reference came from the cache
    assert second["reference_was_cached"] and second["fid"] == pytest.approx(first["fid"])
    with np.load(cache) as stored:
        assert stored["features"].shape == (10, 16) and stored["sigma"].shape == (16, 16)
    other = evaluate_protocol(pipeline, coco_val, feature, ProtocolConfig(num=8), **run)
    assert other["reference_cache"] != first["reference_cache"]  # keyed by the count


def test_the_real_reference_scores_near_zero_against_itself(coco_val: Path) -> None:
    records = protocol.protocol_records(coco_val, ProtocolConfig(num=12))
    with torch.no_grad():
        real = TinyFeatures()(protocol.real_batch(records, 32)).double()
    mu, sigma = protocol.statistics(real)
    assert protocol.frechet_from_statistics(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form() -> None:
    from scipy import linalg

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 5)), rng.normal(1.0, 2.0, size=(200, 5))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    as_torch = [torch.from_numpy(x) for x in (mu1, s1, mu2, s2)]
    assert protocol.frechet_from_statistics(*as_torch) == pytest.approx(expected, rel=1e-6)


def test_kid_is_the_unbiased_polynomial_mmd() -> None:
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64) + 1

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a @ b / 3 + 1) ** 3)

    n = 5  # the subset size: min of the two set sizes
    mean, std = protocol.kernel_distance_from_features(x, y, subsets=1, subset_size=5)
    generator = torch.Generator().manual_seed(0)
    xs = x[torch.randperm(6, generator=generator)[:n]]
    ys = y[torch.randperm(5, generator=generator)[:n]]
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    expected = (
        sum(k(xs[i], xs[j]) for i, j in pairs) / len(pairs)
        + sum(k(ys[i], ys[j]) for i, j in pairs) / len(pairs)
        - 2 * sum(k(xs[i], ys[j]) for i in range(n) for j in range(n)) / n**2
    )
    assert mean == pytest.approx(expected, rel=1e-9) and std == 0.0


def test_cli_protocol_writes_json(
    tiny_artifact: Path,
    coco_val: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from training.metrics.inception import FIDInceptionV3

    # the real network needs its 100 MB weights file: a tiny stand-in keeps this test seconds
    monkeypatch.setattr(FIDInceptionV3, "from_file", classmethod(lambda cls, path: TinyFeatures()))
    out = tmp_path / "out"
    argv = ["protocol", "--model", str(tiny_artifact), "--data", str(coco_val), "--num", "6"]
    argv += ["--inception-weights", "w.pth", "--device", "cpu", "--quiet", "--out", str(out)]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert evaluate.main(argv) == 0
    assert "protocol over 6 images of val2014 at 32 px: FID" in capsys.readouterr().out
    result = json.loads((out / "protocol_val2014.json").read_text())
    assert result["protocol"]["num"] == 6 and result["protocol"]["split"] == "val2014"
    assert (out / "protocol_val2014_samples.png").is_file()
    assert evaluate.main([*argv[:5], "--num", "99", *argv[7:]]) == 2
    assert "--num must be between 2 and the 12 images" in capsys.readouterr().err


def test_clip_score_is_scaled_cosine() -> None:
    def encode_images(images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :2]

    def encode_texts(captions: list[str]) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0] if c == "x" else [-1.0, 0.0] for c in captions])

    images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = 255
    score = protocol._clip_score(encode_images, encode_texts, images, ["x", "not x"])
    assert torch.allclose(score, torch.tensor([100.0, 0.0]))
