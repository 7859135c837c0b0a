"""Swap negatives (experiments.swap_negatives): the edits, and their way into the losses."""

from __future__ import annotations

import random

import pytest
import torch

from training.experiments.negatives import swap_negative


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


def test_the_shapes_edit_is_drawn_only_when_the_run_names_it() -> None:
    caption = "a red circle above a blue square"
    edits = ("relation", "colours", "shapes")
    drawn = {swap_negative(caption, random.Random(seed), edits) for seed in range(60)}
    assert drawn == {
        "a red circle below a blue square",
        "a blue circle above a red square",
        "a red square above a blue circle",
    }
    assert {swap_negative(caption, random.Random(s), ("shapes",)) for s in range(5)} == {
        "a red square above a blue circle"
    }
    assert swap_negative("a red circle above a blue circle", random.Random(0), ("shapes",)) is None
    replaced = {
        "a red circle above a blue circle": "a red square above a blue circle",
        "A small square on a white background": "A small triangle on a white background",
        "a triangle left of a circle": "a circle left of a circle",
        "a red bus": None,
    }
    for before, after in replaced.items():
        assert swap_negative(before, random.Random(0), ("replace-shape",)) == after
    # the default draws as before the switch existed (same rng, same two candidates)
    assert [swap_negative(caption, random.Random(s)) for s in range(20)] == [
        random.Random(s).choice(
            ["a red circle below a blue square", "a blue circle above a red square"]
        )
        for s in range(20)
    ]


def test_swap_edits_are_checked_and_reach_the_objective(
    shapes_root, tiny_config, tmp_path, new_trainer
):
    from training.experiments import ExperimentsConfig

    for bad in ((), ("sizes",)):
        with pytest.raises(ValueError, match="experiments.swap_edits"):
            ExperimentsConfig(swap_negatives=True, swap_edits=bad)
    switches = {"experiments.swap_negatives": True, "experiments.swap_edits": ("shapes",)}
    trainer = new_trainer(tiny_config(shapes_root, switches), tmp_path / "run")
    assert trainer.objective.edits == ("shapes",)
    batch = next(trainer.batches())
    subs = trainer.sub_batches(batch)
    valid = torch.cat([sub.extra.valid for sub in subs]).tolist()
    assert valid == [
        swap_negative(c, random.Random(0), ("shapes",)) is not None for c in batch["caption"]
    ]


def _d_output(trainer, sub):
    fake = trainer.generator(sub.z, sub.sentence, sub.words, sub.mask)
    return trainer.discriminator(torch.cat([sub.real, fake]), sub.sentence)


def test_the_negatives_reach_l_sent_and_l_word(shapes_root, tiny_config, tmp_path, new_trainer):
    from training.experiments.swap import SwapNegativesObjective
    from training.objectives import Objective

    trainer = new_trainer(
        tiny_config(shapes_root, {"experiments.swap_negatives": True}), tmp_path / "run"
    )
    assert isinstance(trainer.objective, SwapNegativesObjective)
    batch = next(trainer.batches())
    captions = list(batch["caption"])
    subs = trainer.sub_batches(batch)
    valid = torch.cat([sub.extra.valid for sub in subs]).tolist()
    assert valid == [swap_negative(c, random.Random(0)) is not None for c in captions]
    assert any(valid) and not all(valid)  # both kinds in this batch, so the check has teeth
    tokens = [t for sub in subs for t in sub.extra.text.tokens]
    for caption, ok, drawn in zip(captions, valid, tokens, strict=True):
        allowed = {swap_negative(caption, random.Random(s)) for s in range(40)} if ok else set()
        allowed = [trainer.text_encoder.encode([a]).tokens[0] for a in allowed or {caption}]
        assert drawn in allowed
    sub = subs[0]
    paper = Objective(trainer.weights)
    with torch.no_grad():
        out = _d_output(trainer, sub)
        _, with_negatives = trainer.objective.discriminator_loss(out, sub)
        _, without = paper.discriminator_loss(out, sub)
    assert sub.extra.valid.any()
    # one more candidate per image can only raise each image's cross-entropy
    assert with_negatives["sent"] > without["sent"] and with_negatives["word"] > without["word"]
    assert with_negatives["adv"] == without["adv"]
    stats = trainer.train_step(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())


def test_without_the_switch_the_trainer_keeps_the_paper_objective(
    shapes_root, tiny_config, tmp_path, new_trainer
):
    from training.objectives import Objective

    trainer = new_trainer(tiny_config(shapes_root), tmp_path / "run")
    assert type(trainer.objective) is Objective
    assert all(sub.extra is None for sub in trainer.sub_batches(next(trainer.batches())))


def test_w_swap_adds_the_pair_ranking_term(shapes_root, tiny_config, tmp_path, new_trainer):
    from training.experiments.swap import SwapNegativesObjective

    config = tiny_config(
        shapes_root, {"experiments.swap_negatives": True, "experiments.w_swap": 3.0}
    )
    trainer = new_trainer(config, tmp_path / "run")
    swap = trainer.objective
    assert swap.text_weights["swap"] == 3.0
    sub = trainer.sub_batches(next(trainer.batches()))[0]
    parts = {k: getattr(swap, k) for k in ("text_encoder", "discriminator", "device", "autocast")}
    plain = SwapNegativesObjective(trainer.weights, False, 0.0, seed=0, rank=0, **parts)
    with torch.no_grad():
        out = _d_output(trainer, sub)
        for phase in ("discriminator_loss", "generator_loss"):
            total, terms = getattr(trainer.objective, phase)(out, sub)
            base, base_terms = getattr(plain, phase)(out, sub)
            assert "swap" in terms and "swap" not in base_terms and terms["swap"] > 0
            torch.testing.assert_close(total, base + 3.0 * terms["swap"])


@pytest.mark.parametrize("options", [{"w_swap": 1.0}, {"w_swap": -1.0, "swap_negatives": True}])
def test_w_swap_needs_swap_negatives_and_a_sign(options) -> None:
    from training.experiments import ExperimentsConfig

    with pytest.raises(ValueError, match="experiments.w_swap"):
        ExperimentsConfig(**options)


def test_w_mismatch_adds_the_matching_aware_term_to_d_alone(
    shapes_root, tiny_config, tmp_path, new_trainer
):
    from training.experiments.swap import SwapNegativesObjective

    config = tiny_config(
        shapes_root, {"experiments.swap_negatives": True, "experiments.w_mismatch": 2.0}
    )
    trainer = new_trainer(config, tmp_path / "run")
    sub = trainer.sub_batches(next(trainer.batches()))[0]
    parts = {k: getattr(trainer.objective, k) for k in ("text_encoder", "discriminator")}
    parts.update(device=trainer.objective.device, autocast=trainer.objective.autocast)
    plain = SwapNegativesObjective(trainer.weights, False, 0.0, seed=0, rank=0, **parts)
    with torch.no_grad():
        out = _d_output(trainer, sub)
        total, terms = trainer.objective.discriminator_loss(out, sub)
        base, _ = plain.discriminator_loss(out, sub)
        assert terms["mismatch"] > 0
        torch.testing.assert_close(total, base + 2.0 * terms["mismatch"])
        g_total, g_terms = trainer.objective.generator_loss(out, sub)
        assert "mismatch" not in g_terms
        torch.testing.assert_close(g_total, plain.generator_loss(out, sub)[0])


@pytest.mark.parametrize(
    "options", [{"w_mismatch": 1.0}, {"w_mismatch": -1.0, "swap_negatives": True}]
)
def test_w_mismatch_needs_swap_negatives_and_a_sign(options) -> None:
    from training.experiments import ExperimentsConfig

    with pytest.raises(ValueError, match="experiments.w_mismatch"):
        ExperimentsConfig(**options)
