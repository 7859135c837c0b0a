"""The GPU tier: bf16 autocast, channels_last, torch.compile and the nccl path, on CUDA only.

Skipped without a CUDA device; `scripts/gpu_check.sh` runs them (with the GPU benchmarks) on a
GPU machine: `python -m pytest -m gpu tests/gpu`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.discriminator import Discriminator
from models.generator import Generator
from models.runtime import autocast

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 as fp32: cuDNN's TF32 default alone differs by ~1.5e-3 between two conv algorithms,
    which would hide what a test compares (a layout, a compiler) behind rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _networks(preset: str = "shapes-64") -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    return Generator.from_preset(preset).to(CUDA), Discriminator.from_preset(preset).to(CUDA)


def _inputs(generator: Generator, batch: int = 8, length: int = 17):
    c = generator.config
    rng = torch.Generator().manual_seed(1)
    z = torch.randn(batch, c.z_dim, generator=rng)
    sentence = torch.randn(batch, c.sentence_dim, generator=rng)
    words = torch.randn(batch, length, c.word_dim, generator=rng)
    mask = torch.arange(length)[None, :] < torch.tensor([length, 9, 5, 12, 17, 3, 8, 10])[:, None]
    return [t.to(CUDA) for t in (z, sentence, words, mask[:batch])]


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_bf16_autocast_tracks_fp32_and_keeps_gradients_finite() -> None:
    generator, discriminator = _networks()
    z, sentence, words, mask = _inputs(generator)
    generator.eval()
    discriminator.eval()
    with torch.no_grad():
        reference = generator(z, sentence, words, mask)
        with autocast(CUDA, torch.bfloat16):
            low = generator(z, sentence, words, mask)
    assert low.dtype == torch.bfloat16
    assert _relative_error(low, reference) < 0.05
    generator.train()
    discriminator.train()
    with autocast(CUDA, torch.bfloat16):
        fake = generator(z, sentence, words, mask)
        out = discriminator(fake, sentence)
    loss = torch.relu(1.0 + out.logits.float()).mean()  # the hinge on fakes, D's side
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in generator.parameters())
    d_grads = [p.grad for p in discriminator.parameters() if p.grad is not None]
    assert d_grads and all(torch.isfinite(g).all() for g in d_grads)


def test_channels_last_gives_the_same_images_and_logits() -> None:
    generator, discriminator = _networks()
    generator.eval()
    discriminator.eval()
    z, sentence, words, mask = _inputs(generator)
    with torch.no_grad():
        images = generator(z, sentence, words, mask)
        logits = discriminator(images, sentence).logits
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
        images_cl = generator(z, sentence, words, mask)
        logits_cl = discriminator(
            images_cl.contiguous(memory_format=torch.channels_last), sentence
        ).logits
    assert _relative_error(images_cl, images) < 1e-3
    assert _relative_error(logits_cl, logits) < 1e-3


def test_torch_compile_matches_eager() -> None:
    generator, _ = _networks()
    generator.eval()
    z, sentence, words, mask = _inputs(generator)
    compiled = torch.compile(generator)
    with torch.no_grad():
        eager = generator(z, sentence, words, mask)
        fast = compiled(z, sentence, words, mask)
    assert _relative_error(fast, eager) < 1e-3


def test_trainer_steps_in_bf16_channels_last_compiled(shapes_root: Path, tmp_path: Path) -> None:
    from training.config import DataConfig, OptimConfig, RunConfig, TrainConfig
    from training.trainer import Trainer

    config = TrainConfig(
        preset="tiny",
        data=DataConfig(source=str(shapes_root)),
        optim=OptimConfig(steps=3, batch_size=8),
        run=RunConfig(num_workers=0, log_every=1, sample_every=3, checkpoint_every=3, compile=True),
    )  # amp and channels_last "auto": both on for a CUDA device
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.device.type == "cuda" and trainer.autocast_dtype == torch.bfloat16
    trainer.fit()
    lines = (tmp_path / "run" / "stats.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"d_loss": null' not in lines[-1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="nccl needs one GPU per rank")
def test_two_ranks_on_nccl_end_with_the_same_networks(shapes_root: Path, tmp_path: Path) -> None:
    from tests.training.states import assert_identical
    from tests.training.test_distributed import run_two_ranks

    run_two_ranks(shapes_root, tmp_path, timeout=600)
    for case in ("local-negatives", "gathered-negatives"):
        ranks = [
            torch.load(tmp_path / f"{case}-rank{r}.pt", map_location="cpu", weights_only=True)
            for r in (0, 1)
        ]
        for module in ("discriminator", "generator", "ema"):
            assert_identical(ranks[0][module], ranks[1][module], module)
