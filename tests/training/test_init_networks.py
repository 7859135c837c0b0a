"""init_generator and init_discriminator: a fresh run starting from saved networks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import get_preset
from models.discriminator import Discriminator
from models.generator import Generator
from training.build import initial_discriminator, initial_generator
from training.checkpoint import REQUIRED_KEYS, save_checkpoint
from training.faults import RunError


@pytest.fixture
def source(tmp_path):
    torch.manual_seed(0)
    generator = Generator(get_preset("tiny").generator)
    generator.save_pretrained(tmp_path / "source")
    return generator, tmp_path / "source"


def test_added_paths_start_from_the_source_weights(source):
    base, directory = source
    config = dataclasses.replace(base.config, caption_paths=("sentence-head", "coarse-attention"))
    generator, ema = Generator(config), Generator(config)
    initial_generator(generator, ema, str(directory))
    z = torch.randn(2, config.z_dim)
    s = torch.randn(2, config.sentence_dim)
    w = torch.randn(2, 5, config.word_dim)
    mask = torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        expected = base.eval()(z, s, w, mask)
        torch.testing.assert_close(generator.eval()(z, s, w, mask), expected, rtol=0, atol=0)
        torch.testing.assert_close(ema.eval()(z, s, w, mask), expected, rtol=0, atol=0)


def test_other_differences_are_refused(source):
    base, directory = source
    wider = Generator(dataclasses.replace(base.config, gf_dim=base.config.gf_dim * 2))
    with pytest.raises(RunError, match="is not this run's"):
        initial_generator(wider, Generator(wider.config), str(directory))


def test_a_source_with_paths_the_run_lacks_is_refused(tmp_path, source):
    base, _ = source
    with_paths = Generator(dataclasses.replace(base.config, caption_paths=("token-layer",)))
    with_paths.save_pretrained(tmp_path / "paths")
    with pytest.raises(RunError, match="is not this run's"):
        initial_generator(base, Generator(base.config), str(tmp_path / "paths"))


def _discriminator(**changes) -> Discriminator:
    torch.manual_seed(1)
    config = dataclasses.replace(get_preset("tiny").discriminator, **changes)
    return Discriminator(config)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_discriminator_from_a_saved_directory(tmp_path):
    saved = _discriminator(coords=True)
    saved.save_pretrained(tmp_path / "d")
    fresh = Discriminator(saved.config)
    assert not _same_weights(fresh, saved)
    initial_discriminator(fresh, str(tmp_path / "d"))
    assert _same_weights(fresh, saved)


def test_discriminator_from_a_checkpoint_file(tmp_path):
    saved = _discriminator()
    state = dict.fromkeys(REQUIRED_KEYS, 0)  # a checkpoint's keys; only these two are read
    state["config"] = {"discriminator": dataclasses.asdict(saved.config)}
    state["discriminator"] = saved.state_dict()
    save_checkpoint(tmp_path / "checkpoint-0000010.pt", state)
    fresh = Discriminator(saved.config)
    initial_discriminator(fresh, str(tmp_path / "checkpoint-0000010.pt"))
    assert _same_weights(fresh, saved)


def test_discriminator_of_another_config_is_refused(tmp_path):
    _discriminator(coords=True).save_pretrained(tmp_path / "d")
    with pytest.raises(RunError, match="init_discriminator=.*is not this run's"):
        initial_discriminator(_discriminator(), str(tmp_path / "d"))
    with pytest.raises(RunError, match="init_discriminator="):
        initial_discriminator(_discriminator(), str(tmp_path / "missing"))
