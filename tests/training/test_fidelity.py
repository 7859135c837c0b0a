"""The official recipe as the coco presets' defaults (issue: COCO exactly as the paper)."""

from __future__ import annotations

import pytest

from training.config import TrainConfig
from training.objectives import LossWeights


def test_coco_presets_pool_as_the_official_code_and_shapes_keep_the_mean() -> None:
    assert TrainConfig(preset="coco-128").model_configs().text_encoder.pooling == "official"
    assert TrainConfig(preset="coco-256").model_configs().text_encoder.pooling == "official"
    assert TrainConfig(preset="shapes-32").model_configs().text_encoder.pooling == "mean"
    assert TrainConfig(preset="coco-128", pooling="mean").model_configs().text_encoder.pooling == (
        "mean"
    )


def test_global_batch_is_per_d_update_over_all_processes() -> None:
    config = TrainConfig(preset="coco-128", global_batch=56)
    assert config.process_batch(8) == 14  # 7 per sub-batch, two sub-batches per step
    assert config.process_batch(1) == 112
    assert TrainConfig(batch_size=16).process_batch(4) == 16  # without it: per process
    with pytest.raises(ValueError, match="does not split evenly"):
        config.process_batch(3)


def test_dry_run_prints_the_official_batch(monkeypatch, capsys, tmp_path) -> None:
    from training.cli import train_main

    monkeypatch.setenv("WORLD_SIZE", "8")
    argv = [str(tmp_path / "run"), "--preset", "coco-128", "--set", "global_batch=56"]
    assert train_main([*argv, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "56 images per D update over 8 process(es), 14 per process per step" in err


def test_the_pretrained_cnn_loss_has_its_own_switch() -> None:
    on = TrainConfig(image_encoder="/models/resnet", losses=("sent", "word"))
    assert LossWeights.from_config(on).img_cnn == 1.0 and LossWeights.from_config(on).img == 0.0
    off = TrainConfig(image_encoder="/models/resnet", pretrained_image_contrastive=False)
    assert LossWeights.from_config(off).img_cnn == 0.0 and LossWeights.from_config(off).img == 1.0
    assert LossWeights.from_config(TrainConfig()).img_cnn == 0.0  # no encoder, no term


def test_infomax_local_and_the_loss_constants_reach_the_networks_and_losses() -> None:
    config = TrainConfig(preset="tiny", infomax=True, infomax_local="region", tau=0.2, rho3=10.0)
    assert config.model_configs().discriminator.infomax_local == "region"
    assert not config.model_configs().discriminator.coords  # the paper's D by default
    assert TrainConfig(preset="tiny", d_coords=True).model_configs().discriminator.coords
    on = TrainConfig(preset="tiny", d_sentence_head=True).model_configs().discriminator
    assert on.sentence_head and not config.model_configs().discriminator.sentence_head
    weights = LossWeights.from_config(config)
    assert (weights.temperature, weights.rho3) == (0.2, 10.0)
