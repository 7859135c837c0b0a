"""GeneratorConfig.caption_paths: each path starts as the identity, learns, exports and loads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.caption_paths import CAPTION_PATHS
from models.config import GeneratorConfig, get_preset
from models.generator import Generator


def _inputs(batch: int, config: GeneratorConfig, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, config.z_dim, generator=g)
    sentence = torch.randn(batch, config.sentence_dim, generator=g)
    words = torch.randn(batch, 6, config.word_dim, generator=g)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3] * (batch // 2))
    return z, sentence, words, mask


def _paired(paths: tuple[str, ...]) -> tuple[Generator, Generator]:
    torch.manual_seed(0)
    base = Generator(get_preset("tiny").generator)
    with_paths = Generator(dataclasses.replace(base.config, caption_paths=paths))
    missing, unexpected = with_paths.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing  # the paths' own weights, nothing else
    return base.eval(), with_paths.eval()


@pytest.mark.parametrize("paths", [(p,) for p in CAPTION_PATHS] + [CAPTION_PATHS])
def test_each_path_starts_as_the_identity_and_then_changes_the_image(paths):
    base, with_paths = _paired(paths)
    inputs = _inputs(4, base.config)
    with torch.no_grad():
        torch.testing.assert_close(with_paths(*inputs), base(*inputs), rtol=0, atol=0)
    # one optimiser step on the paths' weights alone moves the output: they are wired in
    own = [p for n, p in with_paths.named_parameters() if n.split(".")[0] in _modules(paths)]
    optimiser = torch.optim.Adam(own, lr=1e-2)
    with_paths.train()
    with_paths(*inputs).square().mean().backward()
    optimiser.step()
    with_paths.eval()
    with torch.no_grad():
        assert (with_paths(*inputs) - base(*inputs)).abs().max() > 1e-4


def _modules(paths: tuple[str, ...]) -> set[str]:
    return {p.replace("-", "_") for p in paths}


def test_unknown_path_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="sentence-head"):
        GeneratorConfig(resolution=32, channel_multipliers=(4, 2, 1), caption_paths=("stem",))


def test_sentence_head_makes_the_layout_depend_on_the_caption():
    """With z fixed, the paper's stem sees no caption; the sentence head's stem map does."""
    _, g = _paired(("sentence-head",))
    with torch.no_grad():
        g.sentence_head.to_stem.weight.normal_()
    z, sentence, _, _ = _inputs(2, g.config)
    to_global, stem = g.sentence_head(sentence)
    assert stem.shape == (2, g.config.gf_dim * g.config.channel_multipliers[0], 4, 4)
    assert to_global.shape == (2, g.config.z_dim)
    assert (stem[0] - stem[1]).abs().max() > 0


def test_artifact_round_trip_keeps_the_paths(tmp_path):
    _, g = _paired(("token-layer", "word-coords"))
    g.save_pretrained(tmp_path)
    loaded = Generator.from_pretrained(tmp_path)
    assert loaded.config.caption_paths == ("token-layer", "word-coords")
    inputs = _inputs(2, g.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(*inputs), g(*inputs))


def test_a_fresh_generator_matches_the_frozen_arms_initialisation():
    """Every path module is reset, nested ones included (the coordinate query inside the 8x8
    attention): the arms' runs started from exactly this."""
    config = dataclasses.replace(get_preset("tiny").generator, caption_paths=CAPTION_PATHS)
    g = Generator(config)
    for name in ("to_global", "to_stem"):
        assert not getattr(g.sentence_head, name).weight.any()
    assert not g.token_layer.out.weight.any() and not g.token_layer.ff2.weight.any()
    assert not g.word_coords.projection.weight.any()
    assert not g.coarse_attention.out.weight.any()
    assert not g.coarse_attention.coords.projection.weight.any()
