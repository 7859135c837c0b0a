"""The text caches return what the encoder returns, count their hits, and refuse a cache
built by another encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.config import TextEncoderConfig
from models.text_encoder import TextEncoder, TextFeatures
from training.text_cache import (
    CachedTextEncoder,
    DiskTextCache,
    TextCacheMismatchError,
    build_text_cache,
)

pytestmark = pytest.mark.usefixtures("single_thread")

CAPTIONS = [
    "a red circle above a blue square",
    "there is a green triangle",
    "a small yellow square on a black background",
    "a red circle above a blue square",
    "two shapes , a pink circle left of a cyan triangle",
]


def tiny_encoder(tokenizer, seed: int = 0, max_length: int = 17) -> TextEncoder:
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer (seconds to build)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    config = TextEncoderConfig(
        name_or_path="tiny-random-bert", hidden_size=32, max_length=max_length
    )
    return TextEncoder(config, bert, tokenizer)


@pytest.fixture(scope="module")
def tokenizer(hf_offline: None):
    from transformers import AutoTokenizer

    from models.text_encoder import resolve_bert_path

    return AutoTokenizer.from_pretrained(resolve_bert_path(TextEncoderConfig().name_or_path))


@pytest.fixture(scope="module")
def encoder(tokenizer) -> TextEncoder:
    return tiny_encoder(tokenizer)


def assert_same(cached: TextFeatures, fresh: TextFeatures) -> None:
    torch.testing.assert_close(cached.words, fresh.words, rtol=0, atol=1e-6)
    torch.testing.assert_close(cached.sentence, fresh.sentence, rtol=0, atol=1e-6)
    assert torch.equal(cached.mask, fresh.mask)
    assert cached.tokens == fresh.tokens
    assert cached.words.dtype == fresh.words.dtype == torch.float32


def test_memory_cache_equals_on_the_fly_encoding(encoder):
    cache = CachedTextEncoder(encoder)
    first = cache.encode(CAPTIONS, "cpu")
    again = cache.encode(list(reversed(CAPTIONS)), "cpu")
    assert_same(first, encoder.encode(CAPTIONS, "cpu"))
    assert_same(again, encoder.encode(list(reversed(CAPTIONS)), "cpu"))
    assert first.words.shape == (5, 17, 32) and first.sentence.shape == (5, 32)


def test_memory_cache_encodes_each_distinct_caption_once(encoder, monkeypatch):
    cache = CachedTextEncoder(encoder)
    encoded: list[str] = []
    original = encoder.encode
    monkeypatch.setattr(
        encoder,
        "encode",
        lambda captions, device=None: (encoded.extend(captions), original(captions, device))[1],
    )
    cache.encode(CAPTIONS)  # 4 distinct captions, one of them twice
    assert (cache.hits, cache.misses, len(cache)) == (1, 4, 4)
    cache.encode(CAPTIONS[:2] + ["a blue circle"])
    assert (cache.hits, cache.misses, len(cache)) == (3, 5, 5)
    assert sorted(encoded) == sorted(set(CAPTIONS) | {"a blue circle"})


def test_disk_cache_equals_on_the_fly_encoding(encoder, tmp_path: Path):
    directory = build_text_cache(
        encoder, CAPTIONS, tmp_path / "cache", batch_size=2, progress=False
    )
    cache = DiskTextCache(directory, encoder, strict=True)
    assert len(cache) == 4
    batch = CAPTIONS[::-1]
    assert_same(cache.encode(batch, "cpu"), encoder.encode(batch, "cpu"))
    assert (cache.hits, cache.misses) == (5, 0)


def test_disk_cache_encodes_a_miss_or_refuses_it_when_strict(encoder, tmp_path: Path):
    directory = build_text_cache(encoder, CAPTIONS[:2], tmp_path / "cache", progress=False)
    batch = [CAPTIONS[1], "an unknown orange square", CAPTIONS[0]]
    cache = DiskTextCache(directory, encoder)
    assert_same(cache.encode(batch), encoder.encode(batch))
    assert (cache.hits, cache.misses) == (2, 1)
    with pytest.raises(KeyError, match="an unknown orange square"):
        DiskTextCache(directory, encoder, strict=True).encode(batch)


@pytest.mark.parametrize("other", ["weights", "max_length"])
def test_disk_cache_refuses_another_encoder(encoder, tokenizer, tmp_path: Path, other: str):
    directory = build_text_cache(encoder, CAPTIONS, tmp_path / "cache", progress=False)
    stranger = (
        tiny_encoder(tokenizer, seed=1)
        if other == "weights"
        else tiny_encoder(tokenizer, max_length=12)
    )
    with pytest.raises(TextCacheMismatchError, match="was built by 'tiny-random-bert'") as info:
        DiskTextCache(directory, stranger)
    assert "\n" not in str(info.value)
    DiskTextCache(directory, tiny_encoder(tokenizer))  # the same weights rebuilt are accepted


def test_build_replaces_an_old_cache_and_leaves_no_temporary(encoder, tmp_path: Path):
    build_text_cache(encoder, CAPTIONS[:1], tmp_path / "cache", progress=False)
    build_text_cache(encoder, CAPTIONS, tmp_path / "cache", progress=False)
    assert len(DiskTextCache(tmp_path / "cache", encoder)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
