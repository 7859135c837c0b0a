"""The trainer through its Python API: bit-exact resume, interruption, checkpoints, the run
directory, loss switches, EMA and the official D/G schedule. Tiny preset, CPU, a few steps."""

from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.training.states import assert_identical, only_tensors_and_primitives, trained_state


def _load(run_dir: Path) -> dict:
    from training.checkpoint import list_checkpoints, load_checkpoint

    return load_checkpoint(list_checkpoints(run_dir)[-1])


def _stats(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, small_shapes_root, tiny_config, new_trainer) -> Path:
    """Four uninterrupted steps over a 3-batch epoch (so the run crosses an epoch)."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    config = tiny_config(small_shapes_root, {"optim.steps": 4, "run.sample_every": 2})
    summary = new_trainer(config, run_dir).fit()
    assert summary == {
        "step": 4,
        "images": 32,
        "interrupted": False,
        "checkpoint": str(run_dir / "checkpoint-0000004.pt"),
        "skipped_steps": 0,
        "bad_records": 0,
    }
    return run_dir


def test_resume_is_bit_exact(straight_run, small_shapes_root, tiny_config, tmp_path, new_trainer):
    run_dir = tmp_path / "run"
    new_trainer(
        tiny_config(small_shapes_root, {"optim.steps": 2, "run.sample_every": 2}), run_dir
    ).fit()
    assert _load(run_dir)["step"] == 2
    resumed = new_trainer(
        tiny_config(small_shapes_root, {"optim.steps": 4, "run.sample_every": 2}),
        run_dir,
        progress=False,
    )
    assert (resumed.step, resumed.data.epoch, resumed.data.image_in_epoch) == (2, 0, 16)
    assert resumed.images_seen == 16
    resumed.fit()
    straight, again = _load(straight_run), _load(run_dir)
    assert (again["step"], again["epoch"]) == (4, 1)
    assert_identical(trained_state(straight), trained_state(again))
    # the logged losses of the resumed steps are those of the straight run
    drop = {"img_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in _stats(run_dir)] == [
        {k: v for k, v in r.items() if k not in drop} for r in _stats(straight_run)
    ]


def test_sigint_saves_and_the_run_resumes_bit_exactly(
    straight_run, small_shapes_root, tiny_config, tmp_path, new_trainer
):
    """SIGINT after step 1 (of 4): fit stops, saves, restores the handler; resuming matches."""
    run_dir = tmp_path / "run"
    config = tiny_config(small_shapes_root, {"optim.steps": 4, "run.sample_every": 2})
    trainer = new_trainer(config, run_dir)
    step = trainer.train_step

    def step_then_interrupt(batch):
        stats = step(batch)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would, between two steps
        return stats

    trainer.train_step = step_then_interrupt
    leaked = []  # SIGINTs that reached the handler fit() should have replaced

    def outer_handler(signum, frame):
        leaked.append(signum)

    previous = signal.signal(signal.SIGINT, outer_handler)
    try:
        summary = trainer.fit()
        assert signal.getsignal(signal.SIGINT) is outer_handler  # fit restored it
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not leaked and summary["interrupted"] and summary["step"] == 1
    assert _load(run_dir)["step"] == 1
    assert not list(run_dir.glob("*.tmp"))
    new_trainer(config, run_dir).fit()
    assert_identical(trained_state(_load(straight_run)), trained_state(_load(run_dir)))


def test_checkpoint_holds_tensors_and_primitives_only(straight_run):
    checkpoint = _load(straight_run)  # weights_only=True: no pickled objects
    assert only_tensors_and_primitives(checkpoint)
    assert {
        "generator",
        "discriminator",
        "ema",
        "opt_g",
        "opt_d",
        "step",
        "images_seen",
        "epoch",
        "image_in_epoch",
        "rng",
        "config",
    } <= set(checkpoint)
    assert (checkpoint["step"], checkpoint["epoch"], checkpoint["image_in_epoch"]) == (4, 1, 8)
    assert checkpoint["images_seen"] == 32
    # the full resolved configuration travels with the weights
    assert checkpoint["config"] == json.loads((straight_run / "config.json").read_text())
    assert {"torch", "python"} <= set(checkpoint["rng"])
    assert checkpoint["rng"]["torch"].dtype == torch.uint8
    for name in ("opt_g", "opt_d"):
        state = checkpoint[name]["state"]
        assert state and all(
            float(s["step"]) == (4 if name == "opt_g" else 8) for s in state.values()
        )
    assert "stem.weight" in checkpoint["generator"]
    assert checkpoint["generator"].keys() == checkpoint["ema"].keys()
    assert not list(straight_run.glob("*.tmp"))  # written atomically: no temp file left


def test_run_directory_describes_itself(straight_run):
    from PIL import Image

    described = json.loads((straight_run / "config.json").read_text())
    assert set(described) == {"train", "generator", "discriminator", "text_encoder"}
    # every record is strict JSON (no NaN) and carries the position in images and fault counts
    assert described["train"]["preset"] == "tiny" and described["train"]["optim"]["steps"] == 4
    assert described["generator"]["gf_dim"] == 4 and described["generator"]["resolution"] == 32
    assert described["text_encoder"]["hidden_size"] == described["generator"]["word_dim"] == 384
    records = _stats(straight_run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        assert record["img_per_s"] > 0 and record["images"] == 8 * record["step"]
        for key in ("d_loss", "g_loss", "d_adv", "g_adv", "d_sent", "d_word", "g_img"):
            assert torch.isfinite(torch.tensor(record[key])), key
    assert len(list((straight_run / "tb").glob("events.out.tfevents.*"))) == 1
    grids = sorted(p.name for p in (straight_run / "samples").glob("step_*.png"))
    assert grids == ["step_0000002.png", "step_0000004.png"]
    with Image.open(straight_run / "samples" / grids[-1]) as grid:
        # the 8 val captions in one row of 32 px images with 2 px gutters
        assert grid.size == (8 * 34 + 2, 36) and grid.mode == "RGB"  # 2 px gutters all round
    captions = (straight_run / "samples" / "captions.txt").read_text().splitlines()
    assert len(captions) == 8 and all(captions)


LOSS_CASES = {
    "none": ({"objective.losses": ()}, set()),
    "sent": ({"objective.losses": ("sent",)}, {"d_sent", "g_sent"}),
    "word": ({"objective.losses": ("word",)}, {"d_word", "g_word"}),
    "img": ({"objective.losses": ("img",)}, {"g_img"}),
    "dual-contrastive": (
        {"objective.adversarial": "dual-contrastive"},
        {"d_sent", "g_sent", "d_word", "g_word", "g_img"},
    ),
    "infomax": (
        {"discriminator.infomax": True},
        {"d_sent", "g_sent", "d_word", "g_word", "g_img", "d_infomax", "g_infomax"},
    ),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_loss_switches_pick_the_terms(case, shapes_root, tiny_config, tmp_path, new_trainer):
    overrides, terms = LOSS_CASES[case]
    trainer = new_trainer(tiny_config(shapes_root, overrides), tmp_path / "run")
    stats = trainer.train_step(next(trainer.batches()))
    assert set(stats) == {"d_loss", "g_loss", "d_adv", "g_adv"} | terms
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    # the totals are the weighted sums of the logged terms (weights 1, InfoMax 0.2)
    infomax = 0.2 if case == "infomax" else 0.0
    d_total = (
        stats["d_adv"]
        + stats.get("d_sent", 0)
        + stats.get("d_word", 0)
        + infomax * stats.get("d_infomax", 0)
    )
    g_total = (
        stats["g_adv"]
        + stats.get("g_sent", 0)
        + stats.get("g_word", 0)
        + stats.get("g_img", 0)
        + infomax * stats.get("g_infomax", 0)
    )
    assert stats["d_loss"] == pytest.approx(d_total, rel=1e-5, abs=1e-5)
    assert stats["g_loss"] == pytest.approx(g_total, rel=1e-5, abs=1e-5)
    if case == "dual-contrastive":  # cross-entropies, unlike the hinge G loss
        assert stats["d_adv"] > 0 and stats["g_adv"] > 0
    assert hasattr(trainer.discriminator, "infomax_local") == (case == "infomax")


@pytest.fixture(scope="module")
def one_step(tmp_path_factory, shapes_root, tiny_config, new_trainer):
    """One observed train step (decay 0.9): G before it, G's BN buffers at every G forward,
    and G's BN statistics recomputed by hand from the last sub-batch alone."""
    trainer = new_trainer(
        tiny_config(shapes_root, {"optim.ema_decay": 0.9}),
        tmp_path_factory.mktemp("one-step") / "run",
        progress=False,
    )
    batch = next(trainer.batches())
    before = copy.deepcopy(trainer.generator)
    # by hand: the last sub-batch (4 images) through a copy of G in train mode
    text = trainer.text_encoder.encode(batch["caption"])
    expected = copy.deepcopy(trainer.generator).train()
    with torch.no_grad():
        expected(trainer._noise(4, 1), text.sentence[4:], text.words[4:], text.mask[4:])

    seen = []
    forward = trainer.g_forward

    def observed(*args):
        seen.append({k: v.clone() for k, v in trainer.generator.named_buffers()})
        return forward(*args)

    trainer.g_forward = observed
    trainer.train_step(batch)
    return trainer, before, expected, seen


def test_ema_is_decay_times_old_plus_rest_times_new(one_step):
    trainer, before, _, _ = one_step
    params = dict(trainer.generator.named_parameters())
    moved = 0
    for name, ema in trainer.ema.named_parameters():
        old, new = dict(before.named_parameters())[name], params[name]
        torch.testing.assert_close(ema, 0.9 * old + 0.1 * new, rtol=1e-6, atol=1e-7)
        moved += not torch.equal(old, new)
    assert moved > 10  # G did move, so the check has teeth
    for name, buffer in trainer.generator.named_buffers():
        assert torch.equal(dict(trainer.ema.named_buffers())[name], buffer), name


def test_d_steps_twice_and_g_once_per_step(one_step):
    trainer = one_step[0]
    d_steps = {float(s["step"]) for s in trainer.opt_d.state.values()}
    g_steps = {float(s["step"]) for s in trainer.opt_g.state.values()}
    assert d_steps == {2.0} and g_steps == {1.0}
    assert len(trainer.opt_g.state) == len(list(trainer.generator.parameters()))
    assert trainer.step == 1


def test_only_the_last_sub_batch_updates_g_batch_norm_stats(one_step):
    trainer, before, expected, seen = one_step
    assert len(seen) == 2  # one G forward per sub-batch
    # the D-only sub-step left G's running statistics as they were
    initial = dict(before.named_buffers())
    assert_identical(seen[1], dict(initial.items()))
    # and the statistics after the step are those of the last sub-batch alone
    running = {k: v for k, v in trainer.generator.named_buffers() if "running" in k}
    assert running and not all(torch.equal(v, initial[k]) for k, v in running.items())
    for name, value in running.items():
        torch.testing.assert_close(
            value, dict(expected.named_buffers())[name], rtol=1e-5, atol=1e-6
        )
    assert all(
        int(v) == 1 for k, v in trainer.generator.named_buffers() if "num_batches_tracked" in k
    )


def test_init_generator_starts_g_and_ema_from_an_export_and_d_afresh(
    straight_run, small_shapes_root, tiny_config, tmp_path, new_trainer
):
    from training.cli import export_run
    from training.faults import RunError

    exported = tmp_path / "exported"
    export_run(straight_run, exported, weights="generator")
    trained = _load(straight_run)
    config = tiny_config(small_shapes_root, {"run.seed": 1, "run.init_generator": str(exported)})
    warm = new_trainer(config, tmp_path / "warm")
    for name, value in warm.generator.state_dict().items():
        assert torch.equal(value, trained["generator"][name]), name
        assert torch.equal(warm.ema.state_dict()[name], value), name
    scratch = new_trainer(tiny_config(small_shapes_root, {"run.seed": 1}), tmp_path / "scratch")
    for name, value in warm.discriminator.state_dict().items():
        assert torch.equal(value, scratch.discriminator.state_dict()[name]), name
    fresh = scratch.generator.state_dict()
    first = next(iter(fresh))
    assert not torch.equal(warm.generator.state_dict()[first], fresh[first])
    wider = tiny_config(
        small_shapes_root, {"generator.gf_dim": 8, "run.init_generator": str(exported)}
    )
    with pytest.raises(RunError, match="run.init_generator=.*not this run's"):
        new_trainer(wider, tmp_path / "wider")


def test_the_d_options_train_and_resume(small_shapes_root, tiny_config, tmp_path, new_trainer):
    """Coordinates, the sentence head, swap negatives and L_swap together: finite steps, and a
    resumed run rebuilds the same D from its checkpoint."""
    options = {
        f"experiments.{name}": value
        for name, value in [
            ("d_coords", True),
            ("d_sentence_head", True),
            ("swap_negatives", True),
            ("w_swap", 2.0),
        ]
    }
    trainer = new_trainer(tiny_config(small_shapes_root, options), tmp_path / "run")
    summary = trainer.fit()
    assert summary["step"] == 2 and not summary["skipped_steps"]
    config = trainer.discriminator.config
    assert config.coords and config.sentence_head
    resumed = new_trainer(tiny_config(small_shapes_root, options), tmp_path / "run")
    assert resumed.step == 2 and resumed.discriminator.config == config
    for name, value in trainer.discriminator.state_dict().items():
        assert torch.equal(resumed.discriminator.state_dict()[name], value), name


def test_gather_negatives_on_a_single_process_trains_as_without_it(
    shapes_root, tiny_config, tmp_path, new_trainer
):
    """--gather-negatives with no process group (one process) has its own negatives only."""
    losses = []
    for gather in (False, True):
        config = tiny_config(shapes_root, {"optim.steps": 2, "objective.gather_negatives": gather})
        trainer = new_trainer(config, tmp_path / f"run-{gather}")
        losses.append(trainer.train_step(next(trainer.batches())))
    assert losses[0] == losses[1]
