"""The official recipe as the coco presets' defaults (issue: COCO exactly as the paper)."""

from __future__ import annotations

import pytest

from models.config import DiscriminatorConfig
from training.config import ExperimentsConfig, ObjectiveConfig, OptimConfig, TrainConfig
from training.objectives import LossWeights


def test_coco_presets_pool_as_the_official_code_and_shapes_keep_the_mean() -> None:
    assert TrainConfig(preset="coco-128").model_configs().text_encoder.pooling == "official"
    assert TrainConfig(preset="coco-256").model_configs().text_encoder.pooling == "official"
    assert TrainConfig(preset="shapes-32").model_configs().text_encoder.pooling == "mean"
    mean = TrainConfig(preset="coco-128", text_encoder={"pooling": "mean"})
    assert mean.model_configs().text_encoder.pooling == "mean"


def test_global_batch_is_per_d_update_over_all_processes() -> None:
    config = OptimConfig(global_batch=56)
    assert config.process_batch(8) == 14  # 7 per sub-batch, two sub-batches per step
    assert config.process_batch(1) == 112
    assert OptimConfig(batch_size=16).process_batch(4) == 16  # without it: per process
    with pytest.raises(ValueError, match="does not split evenly"):
        config.process_batch(3)


def test_global_batch_and_batch_size_together_are_refused() -> None:
    """Before, a global_batch silently replaced the batch_size given beside it."""
    with pytest.raises(ValueError, match="optim.global_batch .56. and optim.batch_size .16."):
        OptimConfig(global_batch=56, batch_size=16)
    assert OptimConfig(global_batch=56, d_steps=3).process_batch(1) == 168  # batch_size unread


def test_dry_run_prints_the_official_batch(monkeypatch, capsys, tmp_path) -> None:
    from training.cli import train_main

    monkeypatch.setenv("WORLD_SIZE", "8")
    argv = [str(tmp_path / "run"), "--preset", "coco-128", "--set", "optim.global_batch=56"]
    assert train_main([*argv, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "(optim.global_batch): 56 images per D update over 8 process(es), 14 per process" in err


def test_the_pretrained_cnn_loss_has_its_own_switch() -> None:
    d = DiscriminatorConfig()

    def weights(**objective: object) -> LossWeights:
        return LossWeights.from_config(ObjectiveConfig(**objective), d)  # type: ignore[arg-type]

    on = weights(image_encoder="/models/resnet", losses=("sent", "word"))
    assert on.img_cnn == 1.0 and on.img == 0.0
    off = weights(image_encoder="/models/resnet", pretrained_image_contrastive=False)
    assert off.img_cnn == 0.0 and off.img == 1.0
    assert weights().img_cnn == 0.0  # no encoder, no term


def test_infomax_local_and_the_loss_constants_reach_the_networks_and_losses() -> None:
    config = TrainConfig(
        preset="tiny",
        discriminator={"infomax": True, "infomax_local": "region"},
        objective=ObjectiveConfig(tau=0.2, rho3=10.0),
    )
    d = config.model_configs().discriminator
    assert d.infomax and d.infomax_local == "region"
    assert not d.coords  # the paper's D by default
    coords = TrainConfig(preset="tiny", experiments=ExperimentsConfig(d_coords=True))
    assert coords.model_configs().discriminator.coords
    head = TrainConfig(preset="tiny", experiments=ExperimentsConfig(d_sentence_head=True))
    assert head.model_configs().discriminator.sentence_head and not d.sentence_head
    weights = LossWeights.from_config(config.objective, d)
    assert (weights.temperature, weights.rho3) == (0.2, 10.0)
    assert (weights.infomax_d, weights.infomax_g) == (0.2, 0.2)
    without = LossWeights.from_config(config.objective, DiscriminatorConfig())
    assert (without.infomax_d, without.infomax_g) == (0.0, 0.0)  # no heads, no InfoMax
