"""Generator and discriminator: official parameter counts, presets, shapes, masking, D logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrize import is_parametrized

from models.config import (
    PRESETS,
    DiscriminatorConfig,
    GeneratorConfig,
    TextEncoderConfig,
    config_from_dict,
    get_preset,
)
from models.discriminator import Discriminator
from models.generator import Generator
from models.layers import ConditionalBatchNorm, LocalConditionalBatchNorm, with_coordinates

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL_PRESETS = ["tiny", "shapes-32", "shapes-32-cpu", "shapes-64"]


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def text_inputs(batch: int, length: int, dim: int, valid: list[int], seed: int = 0):
    """Random sentence (B, D), words (B, T, D) and a right-padded mask (B, T) with `valid`
    lengths."""
    rng = torch.Generator().manual_seed(seed)
    sentence = torch.randn(batch, dim, generator=rng)
    words = torch.randn(batch, length, dim, generator=rng)
    mask = torch.arange(length)[None, :] < torch.tensor(valid)[:, None]
    return sentence, words, mask


# ---------------------------------------------------------------- official parameter counts


@pytest.fixture(scope="module")
def coco_networks() -> dict[str, tuple[Generator, Discriminator]]:
    """coco-128 and coco-256, built once on the meta device: the same modules, parameter shapes
    and spectral-norm parametrisations, without the seconds of initialising ~180M weights."""
    with torch.device("meta"):
        return {
            n: (Generator.from_preset(n), Discriminator.from_preset(n))
            for n in ("coco-128", "coco-256")
        }


@pytest.fixture(scope="module")
def coco128(coco_networks) -> tuple[Generator, Discriminator]:
    return coco_networks["coco-128"]


def test_coco128_generator_matches_official_parameter_count(coco128) -> None:
    generator, _ = coco128
    assert trainable(generator) == 78_507_779
    assert trainable(generator.sentence_projection) == 98_432  # Linear 768 -> 128
    assert trainable(generator.stem) == 3_170_304  # Linear 128 -> 16*96 * 4*4
    assert trainable(generator.word_projection) == 590_592  # 1x1 conv 768 -> 768
    conditional_bn = [
        m
        for m in generator.modules()
        if isinstance(m, (ConditionalBatchNorm, LocalConditionalBatchNorm))
    ]
    assert sum(trainable(m.gamma) + trainable(m.beta) for m in conditional_bn) == 7_092_864
    # the BN itself is affine-free: every trainable CBN weight sits in gamma / beta
    assert sum(trainable(m) for m in conditional_bn) == 7_092_864


def test_coco128_discriminator_matches_official_parameter_count(coco128) -> None:
    _, discriminator = coco128
    assert trainable(discriminator) == 87_911_713
    assert trainable(discriminator.sentence_projection) == 1_181_184  # SN Linear 768 -> 1536
    assert trainable(discriminator.region_projection) == 295_680  # SN 1x1 conv 384 -> 768
    assert trainable(discriminator.linear) == 1_537  # SN Linear 1536 -> 1


# ---------------------------------------------------------------- presets


def assert_no_spectral_norm(generator: nn.Module) -> None:
    parametrized = [n for n, m in generator.named_modules() if is_parametrized(m)]
    assert parametrized == []


def assert_spectral_norm_everywhere(discriminator: nn.Module) -> None:
    layers = {
        n: m for n, m in discriminator.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    assert layers, "the discriminator has no conv / linear layers"
    bare = [n for n, m in layers.items() if not is_parametrized(m, "weight")]
    assert bare == [], f"layers without spectral norm: {bare}"
    norms = [
        n
        for n, m in discriminator.named_modules()
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
    ]
    assert norms == [], f"normalisation layers in D: {norms}"


@pytest.fixture(scope="module")
def small_networks() -> dict[str, tuple[Generator, Discriminator]]:
    torch.manual_seed(0)
    return {
        n: (Generator.from_preset(n).eval(), Discriminator.from_preset(n).eval())
        for n in SMALL_PRESETS
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds(name: str, coco_networks, small_networks) -> None:
    preset = get_preset(name)
    generator, discriminator = {**coco_networks, **small_networks}[name]
    assert generator.config == preset.generator
    assert discriminator.config == preset.discriminator
    blocks = len(generator.global_blocks) + len(generator.spatial_blocks)
    assert 4 * 2**blocks == preset.generator.resolution
    assert len(generator.global_blocks) == 2  # 4 -> 8 -> 16 px, where the word attention runs
    assert generator.config.word_dim == preset.text_encoder.hidden_size
    assert discriminator.config.sentence_dim == preset.text_encoder.hidden_size
    assert_no_spectral_norm(generator)
    assert_spectral_norm_everywhere(discriminator)


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_generator_forward_shapes_and_attention(name: str, small_networks) -> None:
    generator, _ = small_networks[name]
    c = generator.config
    valid = [3, 7]
    sentence, words, mask = text_inputs(2, 7, c.word_dim, valid)
    z = torch.randn(2, c.z_dim, generator=torch.Generator().manual_seed(1))
    images, attention = generator(z, sentence, words, mask, return_attention=True)
    assert images.shape == (2, 3, c.resolution, c.resolution)
    assert images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0  # not a constant image
    assert attention.shape == (2, 7, 16, 16)
    assert torch.allclose(attention.sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert torch.all(attention[0, 3:] == 0)  # padded words get no attention
    assert torch.all(attention[0, :3] > 0)
    assert torch.all(attention[1] > 0)
    assert torch.equal(generator(z, sentence, words, mask), images)  # eval mode: deterministic


@pytest.mark.parametrize("name", ["tiny"])
def test_padded_words_do_not_change_the_generator(name: str, small_networks) -> None:
    generator, _ = small_networks[name]
    c = generator.config
    sentence, words, mask = text_inputs(2, 9, c.word_dim, [4, 6])
    z = torch.randn(2, c.z_dim, generator=torch.Generator().manual_seed(2))
    garbage = words.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), c.word_dim)
    with torch.no_grad():
        clean = generator(z, sentence, words, mask)
        dirty = generator(z, sentence, garbage, mask)
        unmasked = generator(z, sentence, garbage, torch.ones_like(mask))
    assert torch.allclose(clean, dirty, rtol=0, atol=1e-6)
    assert not torch.allclose(clean, unmasked, rtol=0, atol=1e-3)  # the garbage does matter


@pytest.mark.parametrize("name", ["tiny"])
def test_generator_conditions_on_noise_and_sentence(name: str, small_networks) -> None:
    generator, _ = small_networks[name]
    c = generator.config
    sentence, words, mask = text_inputs(2, 5, c.word_dim, [5, 5])
    z = torch.randn(2, c.z_dim)
    with torch.no_grad():
        base = generator(z, sentence, words, mask)
        other_z = generator(torch.randn(2, c.z_dim), sentence, words, mask)
        other_sentence = generator(z, torch.randn(2, c.word_dim), words, mask)
    assert (base - other_z).abs().max() > 1e-3
    assert (base - other_sentence).abs().max() > 1e-3


def test_generator_rejects_mismatched_text() -> None:
    generator = Generator.from_preset("tiny")
    z_dim = generator.config.z_dim
    sentence, words, mask = text_inputs(2, 5, 384, [5, 5])
    with pytest.raises(ValueError, match="sentence"):
        generator(torch.randn(2, z_dim), sentence[:, :100], words, mask)
    with pytest.raises(ValueError, match="words"):
        generator(torch.randn(2, z_dim), sentence, words[:1], mask)
    with pytest.raises(ValueError, match="expected z"):
        generator(torch.randn(2, z_dim + 1), sentence, words, mask)
    with pytest.raises(ValueError, match="word_mask"):
        generator(torch.randn(2, z_dim), sentence, words, mask[:, :3])
    with pytest.raises(ValueError, match="at least one valid token"):
        generator(torch.randn(2, z_dim), sentence, words, torch.zeros_like(mask))


# ---------------------------------------------------------------- discriminator


def expected_logits(
    discriminator: Discriminator, images: torch.Tensor, sentence: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """linear(phi) + <phi, V e_s>, phi = sum-pooled ReLU of the last block (read by a hook)."""
    last = {}
    hook = discriminator.blocks[-1].register_forward_hook(lambda m, i, o: last.update(out=o))
    try:
        discriminator(images, sentence)
    finally:
        hook.remove()
    phi = torch.relu(last["out"]).sum(dim=(2, 3))  # (B, F)
    halves = images.shape[0] // sentence.shape[0]
    v_e = sentence.repeat(halves, 1) @ discriminator.sentence_projection.weight.T
    v_e = v_e + discriminator.sentence_projection.bias  # (B, F)
    linear = phi @ discriminator.linear.weight.T + discriminator.linear.bias  # (B, 1)
    return linear[:, 0] + (phi * v_e).sum(1), phi


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_discriminator_outputs_and_projection_logits(name: str, small_networks) -> None:
    _, discriminator = small_networks[name]  # eval: spectral norm does no power iteration
    c = discriminator.config
    images = torch.rand(
        2, 3, c.resolution, c.resolution, generator=torch.Generator().manual_seed(3)
    )
    sentence = torch.randn(2, c.sentence_dim)
    with torch.no_grad():
        out = discriminator(images, sentence)
        logits, phi = expected_logits(discriminator, images, sentence)
    assert out.logits.shape == (2,)
    assert out.features.shape == (2, c.feature_dim)
    assert out.sentence.shape == (2, c.feature_dim)
    assert out.regions.shape == (2, 16 * 16, c.word_dim)
    assert out.infomax_local is None and out.infomax_global is None
    assert torch.allclose(out.features, phi, rtol=1e-5, atol=1e-5)
    assert torch.allclose(out.logits, logits, rtol=1e-4, atol=1e-4)
    assert (out.logits[0] - out.logits[1]).abs() > 1e-6


@pytest.mark.parametrize("name", ["tiny"])
def test_discriminator_real_and_fake_halves_share_captions(name: str, small_networks) -> None:
    _, discriminator = small_networks[name]
    c = discriminator.config
    b = 2
    images = torch.rand(2 * b, 3, c.resolution, c.resolution)  # [real; fake]
    sentence = torch.randn(b, c.sentence_dim)
    with torch.no_grad():
        out = discriminator(images, sentence)
        logits, _ = expected_logits(discriminator, images, sentence)
        real = discriminator(images[:b], sentence).logits
        fake = discriminator(images[b:], sentence).logits
        swapped = discriminator(images[b:], sentence.flip(0)).logits
    assert out.logits.shape == (2 * b,)
    assert out.sentence.shape == (b, c.feature_dim)
    assert torch.allclose(out.logits, logits, rtol=1e-4, atol=1e-4)
    assert torch.allclose(out.logits, torch.cat([real, fake]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fake, swapped, rtol=0, atol=1e-5)  # the caption does matter


@pytest.mark.parametrize(
    ("name", "local", "positions"),
    [
        ("tiny", "region", 16 * 16),
        ("shapes-64", "region", 16 * 16),
        ("tiny", "penultimate", 4 * 4),  # mimicry: the raw output of the block before the last
        ("shapes-64", "penultimate", 4 * 4),
    ],
)
def test_discriminator_infomax_heads(name: str, local: str, positions: int) -> None:
    discriminator = Discriminator.from_preset(name, infomax=True, infomax_local=local).eval()
    c = discriminator.config
    assert c.infomax and c.infomax_dim == 1024 and c.infomax_local == local
    assert_spectral_norm_everywhere(discriminator)
    images = torch.rand(2, 3, c.resolution, c.resolution)
    with torch.no_grad():
        out = discriminator(images, torch.randn(2, c.sentence_dim))
    assert out.infomax_local.shape == (2, positions, 1024)  # (B, K, R)
    assert out.infomax_global.shape == (2, 1024)  # (B, R)
    assert torch.isfinite(out.infomax_local).all() and torch.isfinite(out.infomax_global).all()


def test_coordinate_channels_locate_each_pixel() -> None:
    grid = with_coordinates(torch.zeros(2, 1, 4, 8))[:, 1:]  # (2, 2, 4, 8): x then y
    assert grid.shape == (2, 2, 4, 8)
    assert torch.allclose(grid[0, 0, 0], torch.linspace(-0.875, 0.875, 8))  # x, left to right
    assert torch.allclose(grid[1, 1, :, 5], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # y, down


def _tiny_discriminator(**options: bool) -> Discriminator:
    """The tiny preset's D with `options` set, from seed 0, in eval mode."""
    torch.manual_seed(0)
    tiny = get_preset("tiny").discriminator
    return Discriminator(DiscriminatorConfig(**{**tiny.__dict__, **options})).eval()


def test_discriminator_with_coords_tells_positions_apart() -> None:
    """A plain D gives every inner region of a flat image the same feature (its convolutions
    are translation-equivariant); with `coords` the regions depend on where they are."""
    flat = torch.full((1, 3, 32, 32), 0.5)
    sentence = torch.randn(1, get_preset("tiny").discriminator.sentence_dim)
    for coords in (False, True):
        discriminator = _tiny_discriminator(coords=coords)
        with torch.no_grad():
            out = discriminator(flat, sentence)
        inner = out.regions.reshape(16, 16, -1)[4:12, 4:12].reshape(64, -1)  # (64, D_w)
        spread = (inner - inner[0]).abs().max().item()
        assert (spread > 1e-3) == coords, (coords, spread)
        assert discriminator.stem.conv1.in_channels == 3 + 2 * coords


def test_sentence_head_makes_v_e_s_non_linear() -> None:
    """The paper's V is affine: V(s) + V(-s) = 2 V(0). The sentence head is not, and it starts
    from both a hidden layer and a linear shortcut."""
    dim = get_preset("tiny").discriminator.sentence_dim
    images, zero, sentence = torch.rand(2, 3, 32, 32), torch.zeros(1, dim), torch.randn(1, dim)
    for head in (False, True):
        discriminator = _tiny_discriminator(sentence_head=head)
        with torch.no_grad():
            v = [discriminator(images, s).sentence for s in (sentence, -sentence, zero)]
        gap = (v[0] + v[1] - 2 * v[2]).abs().max().item()
        assert (gap > 1e-3) == head, (head, gap)
    assert {"hidden", "out", "shortcut"} <= {
        n for n, _ in discriminator.sentence_projection.named_children()
    }


def test_discriminator_rejects_wrong_image_size() -> None:
    discriminator = Discriminator.from_preset("tiny")
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 32, 32\)"):
        discriminator(torch.rand(2, 3, 64, 64), torch.randn(2, 384))


@pytest.mark.parametrize(("images", "sentences", "dim"), [(3, 2, 384), (2, 4, 384), (2, 2, 100)])
def test_discriminator_rejects_mismatched_sentences(images: int, sentences: int, dim: int) -> None:
    discriminator = Discriminator.from_preset("tiny")
    with pytest.raises(ValueError, match="expected sentence"):
        discriminator(torch.rand(images, 3, 32, 32), torch.randn(sentences, dim))


# ---------------------------------------------------------------- configuration errors


@pytest.mark.parametrize("resolution", [0, 16, 48, 100, 1000])
def test_bad_resolution_is_a_clear_error(resolution: int) -> None:
    with pytest.raises(ValueError, match=f"power of two >= 32, got {resolution}"):
        GeneratorConfig(resolution=resolution)
    with pytest.raises(ValueError, match="power of two"):
        DiscriminatorConfig(resolution=resolution)


def test_wrong_number_of_multipliers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="resolution 64 needs 4 channel multipliers .* got 5"):
        GeneratorConfig(resolution=64, channel_multipliers=(16, 8, 4, 2, 1))
    with pytest.raises(ValueError, match="resolution 256 needs 6 channel multipliers .* got 5"):
        DiscriminatorConfig(resolution=256)
    assert (
        GeneratorConfig(resolution=256, channel_multipliers=(16, 8, 8, 4, 2, 1)).resolution == 256
    )


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown preset 'coco-512'; choose one of .*shapes-64"):
        get_preset("coco-512")
    with pytest.raises(ValueError, match="unknown preset"):
        Generator.from_preset("nope")
    with pytest.raises(ValueError, match="unknown preset"):
        Discriminator.from_preset("nope")


def test_bad_text_encoder_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="pooling must be 'mean', 'cls' or 'official', got 'max'"):
        TextEncoderConfig(pooling="max")
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        TextEncoderConfig(max_length=2)


def test_config_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"GeneratorConfig: unknown keys \['colour'\]"):
        config_from_dict(GeneratorConfig, {"resolution": 32, "colour": 1})
    config = config_from_dict(GeneratorConfig, {"resolution": 32, "channel_multipliers": [4, 2, 1]})
    assert config.channel_multipliers == (4, 2, 1)  # JSON lists come back as tuples


def test_infomax_local_features_are_the_raw_penultimate_output() -> None:
    discriminator = Discriminator.from_preset("tiny", infomax=True).eval()
    assert discriminator.config.infomax_local == "penultimate"  # the default: mimicry's choice
    seen: dict[str, torch.Tensor] = {}
    discriminator.blocks[-1].register_forward_hook(lambda m, i, o: seen.update(last_in=i[0]))
    discriminator.infomax_local.register_forward_hook(lambda m, i, o: seen.update(head_in=i[0]))
    c = discriminator.config
    with torch.no_grad():
        discriminator(torch.rand(2, 3, c.resolution, c.resolution), torch.randn(2, c.sentence_dim))
    assert torch.equal(seen["head_in"], seen["last_in"])
    assert (seen["head_in"] < 0).any()  # raw: no ReLU in front of the head
    with pytest.raises(ValueError, match="infomax_local"):
        DiscriminatorConfig(infomax_local="global")


def test_pretrained_image_encoder_sees_224_pixels() -> None:
    from models.image_encoder import PretrainedImageEncoder

    class Recorder(torch.nn.Module):
        def forward(self, pixel_values: torch.Tensor):
            self.shape = tuple(pixel_values.shape)
            return type("Out", (), {"logits": pixel_values.mean(dim=(2, 3))})()

    encoder = PretrainedImageEncoder(Recorder())
    for side in (128, 256, 224):
        encoder(torch.rand(2, 3, side, side))
        assert encoder.resnet.shape == (2, 3, 224, 224)
    flat = encoder(torch.full((1, 3, 128, 128), 0.25))
    assert torch.allclose(flat, torch.full((1, 3), 0.25))  # a bilinear resize keeps a constant


def test_a_region_side_no_block_has_is_a_clear_error() -> None:
    """region_resolution 3 passes the config's range check but no block of a 32 px D is 3x3:
    once a TypeError deep in __init__, now a ValueError naming the field."""
    tiny = get_preset("tiny").discriminator
    with pytest.raises(ValueError, match="region_resolution 3 is not the side of any block"):
        Discriminator(DiscriminatorConfig(**{**tiny.__dict__, "region_resolution": 3}))
