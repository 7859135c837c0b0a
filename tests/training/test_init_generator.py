"""init_generator: a run may add caption paths to the model it starts from, nothing else."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import get_preset
from models.generator import Generator
from training.build import initial_generator
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
