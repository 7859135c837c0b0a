"""XMCGANPipeline: loading, caption-major output, seeds, word attention, bundled model, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.artifacts import ArtifactError
from models.config import GeneratorConfig
from models.generator import Generator
from models.pipeline import BUNDLED_DIR, XMCGANPipeline

pytestmark = pytest.mark.usefixtures("single_thread")

RED, BLUE = "a red circle above a blue square", "a green triangle left of a yellow star"


@pytest.fixture(scope="module")
def pipe(tiny_artifact: Path) -> XMCGANPipeline:
    return XMCGANPipeline.from_pretrained(tiny_artifact, device=None)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def max_difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def test_loads_the_artifact(pipe: XMCGANPipeline, tiny_artifact: Path) -> None:
    assert pipe.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pipe.resolution == 32
    assert pipe.model_id == "xmc-tiny"
    assert not pipe.generator.training and not pipe.text_encoder.training
    config = json.loads((tiny_artifact / "config.json").read_text())
    assert config["kind"] == "pipeline"
    assert config["text_encoder"]["name_or_path"] == pipe.text_encoder.config.name_or_path
    assert sorted(p.name for p in tiny_artifact.iterdir()) == ["config.json", "model.safetensors"]


def test_images_are_caption_major(pipe: XMCGANPipeline) -> None:
    images = pipe([RED, BLUE], seed=3, num_images_per_caption=2)
    assert len(images) == 4
    for image in images:
        assert isinstance(image, Image.Image)
        assert image.size == (32, 32) and image.mode == "RGB"
    # image k of caption c uses seed 3 + 2c + k: rebuild each alone
    alone = [
        pipe(caption, seed=seed)[0] for caption, seed in [(RED, 3), (RED, 4), (BLUE, 5), (BLUE, 6)]
    ]
    assert all(max_difference(a, b) <= 1 for a, b in zip(images, alone, strict=True))
    assert max_difference(images[0], images[2]) > 1  # the rows are not all one caption
    assert max_difference(images[0], images[1]) > 1  # nor all one seed


def test_same_seed_and_caption_alone_or_in_a_batch(pipe: XMCGANPipeline) -> None:
    alone = pipe(BLUE, seed=11)[0]
    features = pipe.encode_text([RED, BLUE, RED])
    batch = pipe.to_pil(pipe.generate(features, [5, 11, 7]))
    assert max_difference(alone, batch[1]) <= 1
    assert max_difference(pipe(BLUE, seed=11)[0], alone) == 0


def test_different_seeds_differ(pipe: XMCGANPipeline) -> None:
    first, second = pipe([RED, RED], seed=0)  # seeds 0 and 1
    assert max_difference(first, second) > 8
    assert max_difference(pipe(RED, seed=0)[0], first) <= 1


def test_truncation(pipe: XMCGANPipeline) -> None:
    full, truncated = pipe(RED, seed=4)[0], pipe(RED, seed=4, truncation=0.5)[0]
    assert max_difference(full, truncated) > 1
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"truncation must be in \(0, 1\]"):
            pipe(RED, seed=0, truncation=bad)


def test_word_attention(pipe: XMCGANPipeline) -> None:
    image, tokens, maps = pipe.word_attention(RED, seed=9)
    assert tokens == ["[CLS]", "a", "red", "circle", "above", "a", "blue", "square", "[SEP]"]
    assert maps.shape == (len(tokens), 16, 16)
    assert torch.allclose(maps.sum(0), torch.ones(16, 16), atol=1e-5)
    assert (maps >= 0).all()
    assert max_difference(image, pipe(RED, seed=9)[0]) <= 1


def test_bad_arguments(pipe: XMCGANPipeline) -> None:
    features = pipe.encode_text([RED])
    with pytest.raises(ValueError, match="got 2 seeds for 1 captions"):
        pipe.generate(features, [1, 2])
    with pytest.raises(ValueError, match="num_images_per_caption must be >= 1"):
        pipe(RED, seed=0, num_images_per_caption=0)


def test_text_encoder_must_match_the_generator(text_encoder) -> None:
    config = GeneratorConfig(resolution=32, gf_dim=4, channel_multipliers=(4, 2, 1))  # 768-d
    with pytest.raises(ArtifactError, match="expects 768-d words .* gives 384-d"):
        XMCGANPipeline(Generator(config), text_encoder, device="cpu")


def test_directory_without_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="config.json not found"):
        XMCGANPipeline.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"kind": "discriminator", "discriminator": {}}')
    with pytest.raises(ArtifactError, match="holds no generator config"):
        XMCGANPipeline.from_pretrained(tmp_path)


def test_bundled_default_model() -> None:
    """Without an argument: the bundled model that ships in the package, with its model card."""
    assert (BUNDLED_DIR / "model.safetensors").is_file(), "the bundled model is not installed"
    assert (BUNDLED_DIR / "MODEL_CARD.md").is_file()
    bundled = XMCGANPipeline.from_pretrained()
    assert bundled.model_id == "xmc-shapes-32"
    images = bundled(RED, seed=0, num_images_per_caption=2)
    assert [image.size for image in images] == [(32, 32), (32, 32)]
    assert images[0].tobytes() != images[1].tobytes()


def test_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    import models.pipeline

    monkeypatch.setattr(models.pipeline, "BUNDLED_DIR", tmp_path / "default")
    with pytest.raises(ArtifactError, match="bundled") as error:
        XMCGANPipeline.from_pretrained()
    assert "pass an artifact directory" in str(error.value)


def test_interpolation_starts_and_ends_at_the_endpoints(pipe: XMCGANPipeline) -> None:
    features = pipe.encode_text([RED, BLUE])
    frames = pipe.to_pil(pipe.interpolate(features, (3, 9), frames=5))
    assert len(frames) == 5 and frames[0].size == (32, 32)
    assert max_difference(frames[0], pipe(RED, seed=3)[0]) <= 1
    assert max_difference(frames[-1], pipe(BLUE, seed=9)[0]) <= 1
    assert max_difference(frames[1], frames[3]) > 1  # the middle moves


def test_slerp_keeps_the_endpoints_and_the_shell() -> None:
    from models.interpolation import slerp

    a, b = torch.randn(64), torch.randn(64)
    path = slerp(a, b, torch.linspace(0, 1, 9))
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b, atol=1e-5)
    assert path.norm(dim=1).min() > 0.9 * min(a.norm(), b.norm())  # no dip towards 0
    for seed in range(50):  # a latent with itself: the lerp, exactly (arccos gave 3e-4 rad)
        z = torch.randn(64, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(slerp(z, z, torch.linspace(0, 1, 3))[1], z), seed
        assert torch.allclose(slerp(z, -z, torch.tensor([0.25])), 0.5 * z)  # antiparallel


def test_return_attention_is_a_typed_output(pipe: XMCGANPipeline) -> None:
    from models.generator import GeneratorOutput

    out = pipe.generate(pipe.encode_text([RED]), [1], return_attention=True)
    assert isinstance(out, GeneratorOutput)
    assert out.images.shape == (1, 3, 32, 32) and out.attention.shape[-2:] == (16, 16)


def test_folded_norms_match_the_trained_generator(pipe: XMCGANPipeline) -> None:
    features = pipe.encode_text([RED, BLUE])
    z = torch.randn(2, pipe.generator.config.z_dim)
    f = features
    with torch.inference_mode():
        plain = pipe.generator(z, f.sentence, f.words, f.mask)
        folded = pipe.inference_generator(z, f.sentence, f.words, f.mask)
    assert (plain - folded).abs().max() < 1e-4
    assert pipe.generator_flops(batch=2) > 0


def test_onnx_runtime_is_the_cpu_default_and_draws_what_torch_draws(tiny_artifact: Path) -> None:
    onnx = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    eager = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu", backend="torch")
    assert (onnx.backend, eager.backend) == ("onnxruntime", "torch")
    features = onnx.encode_text([RED, BLUE, RED])
    for rows in ([0], [0, 1, 2]):  # the exported graph takes any batch size
        seeds = [7 + row for row in rows]
        got = onnx.generate(features.select(rows), seeds)
        want = eager.generate(features.select(rows), seeds)
        assert got.shape == want.shape and (got - want).abs().max() < 1e-4
    _, attention = onnx.generate(features, [1, 2, 3], return_attention=True)  # PyTorch's path
    assert attention.shape[:2] == (3, features.words.shape[1])
    torch.set_num_threads(2)
    try:  # a new thread count builds a session with as many threads
        onnx.generate(features, [1, 2, 3])
        assert onnx._onnx.threads == 2
    finally:
        torch.set_num_threads(1)


def test_backend_choices_are_checked(tiny_artifact: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu", backend="tensorrt")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="on the CPU"):
            XMCGANPipeline.from_pretrained(tiny_artifact, device="cuda", backend="onnxruntime")
        gpu = XMCGANPipeline.from_pretrained(tiny_artifact, device="cuda")
        assert gpu.backend == "torch"


def test_a_graph_that_disagrees_with_the_weights_is_refused(tiny_artifact: Path) -> None:
    from models.onnx_backend import OnnxGenerator

    pipe = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    features = pipe.encode_text([RED, BLUE])
    z = torch.randn(2, pipe.generator.config.z_dim)
    example = (z, features.sentence, features.words, features.mask)
    graph = OnnxGenerator(pipe.inference_generator, example, threads=1)
    assert graph.check(pipe.inference_generator, example) < 1e-4
    with torch.no_grad():
        for parameter in pipe.inference_generator.parameters():
            parameter.add_(0.1)  # the weights move on; the exported graph does not
    with pytest.raises(RuntimeError, match="differs from the PyTorch generator"):
        graph.check(pipe.inference_generator, example)


def test_auto_falls_back_to_torch_when_the_export_fails(
    tiny_artifact: Path, monkeypatch, caplog
) -> None:
    import models.pipeline as pipeline_module

    def broken(*args, **kwargs):
        raise RuntimeError("exporter missing")

    monkeypatch.setattr(pipeline_module, "OnnxGenerator", broken)
    auto = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    eager = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu", backend="torch")
    features = auto.encode_text([RED])
    with caplog.at_level("WARNING", logger="models.pipeline"):
        images = auto.generate(features, [4])
    assert auto.backend == "torch" and "exporter missing" in caplog.text
    assert torch.equal(images, eager.generate(features, [4]))
    forced = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu", backend="onnxruntime")
    with pytest.raises(RuntimeError, match="exporter missing"):
        forced.generate(features, [4])
