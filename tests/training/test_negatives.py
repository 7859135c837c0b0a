"""Swap negatives (TrainConfig.swap_negatives): the edits, and their way into the losses."""

from __future__ import annotations

import random

import pytest
import torch

from training.negatives import hard_negatives, swap_negative


@pytest.mark.parametrize(
    ("caption", "edits"),
    [
        (
            "a red circle left of a blue square",
            {"a red circle right of a blue square", "a blue circle left of a red square"},
        ),
        ("a green square above a green circle", {"a green square below a green circle"}),
        (
            "a small pink triangle on a black background",
            {"a small black triangle on a pink background"},
        ),
        (
            "Left of the red bus, a white car",
            {"Right of the red bus, a white car", "Left of the white bus, a red car"},
        ),
        ("a red circle", set()),
        ("there is a red circle beside a red square", set()),
    ],
)
def test_each_caption_gets_one_of_the_edits_it_allows(caption: str, edits: set[str]) -> None:
    drawn = {swap_negative(caption, random.Random(seed)) for seed in range(40)}
    assert drawn == (edits or {None})


def test_the_negatives_reach_l_sent_and_l_word(shapes_root, tiny_config, tmp_path, new_trainer):
    from training.objectives import discriminator_loss

    trainer = new_trainer(tiny_config(shapes_root, swap_negatives=True), tmp_path / "run")
    batch = next(trainer.batches())
    captions = list(batch["caption"])
    subs = trainer.sub_batches(batch)
    valid = torch.cat([sub.negatives[1] for sub in subs]).tolist()
    assert valid == [swap_negative(c, random.Random(0)) is not None for c in captions]
    assert any(valid) and not all(valid)  # both kinds in this batch, so the check has teeth
    tokens = [t for sub in subs for t in sub.negatives[0].tokens]
    for caption, ok, drawn in zip(captions, valid, tokens, strict=True):
        allowed = {swap_negative(caption, random.Random(s)) for s in range(40)} if ok else set()
        allowed = [trainer.text_encoder.encode([a]).tokens[0] for a in allowed or {caption}]
        assert drawn in allowed
    sub = subs[0]
    with torch.no_grad():
        fake = trainer.generator(sub.z, sub.sentence, sub.words, sub.mask)
        out = trainer.discriminator(torch.cat([sub.real, fake]), sub.sentence)
        hard = hard_negatives(trainer.discriminator, sub.negatives)
        _, with_negatives = discriminator_loss(
            out, sub.words, sub.mask, trainer.weights, False, hard
        )
        _, without = discriminator_loss(out, sub.words, sub.mask, trainer.weights)
    assert sub.negatives[1].any()
    # one more candidate per image can only raise each image's cross-entropy
    assert with_negatives["sent"] > without["sent"] and with_negatives["word"] > without["word"]
    assert with_negatives["adv"] == without["adv"]
    stats = trainer.train_step(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())


def test_w_swap_adds_the_pair_ranking_term(shapes_root, tiny_config, tmp_path, new_trainer):
    from training.objectives import LossWeights, discriminator_loss, generator_loss

    config = tiny_config(shapes_root, swap_negatives=True, w_swap=3.0)
    trainer = new_trainer(config, tmp_path / "run")
    assert trainer.weights.swap == 3.0
    sub = trainer.sub_batches(next(trainer.batches()))[0]
    with torch.no_grad():
        fake = trainer.generator(sub.z, sub.sentence, sub.words, sub.mask)
        out = trainer.discriminator(torch.cat([sub.real, fake]), sub.sentence)
        hard = hard_negatives(trainer.discriminator, sub.negatives)
        plain = LossWeights.from_config(tiny_config(shapes_root, swap_negatives=True))
        for loss in (discriminator_loss, generator_loss):
            total, terms = loss(out, sub.words, sub.mask, trainer.weights, False, negatives=hard)
            base, base_terms = loss(out, sub.words, sub.mask, plain, False, negatives=hard)
            assert "swap" in terms and "swap" not in base_terms and terms["swap"] > 0
            torch.testing.assert_close(total, base + 3.0 * terms["swap"])


@pytest.mark.parametrize("options", [{"w_swap": 1.0}, {"w_swap": -1.0, "swap_negatives": True}])
def test_w_swap_needs_swap_negatives_and_a_sign(options) -> None:
    from training.config import TrainConfig

    with pytest.raises(ValueError, match="w_swap"):
        TrainConfig(data="x", **options)
