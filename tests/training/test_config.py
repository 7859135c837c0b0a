"""The training configuration in sections: network changes on the preset's own configs, the
old flat configs upgraded (a run written before still resumes), the retired one-value fields
(every saved artifact still loads), and torchrun's environment read in one place."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from training.config import (
    DataConfig,
    ExperimentsConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    describe,
)
from training.config_io import dotted, override, parse_overrides, train_config, upgrade

ROOT = Path(__file__).parents[2]
FLAT = ROOT / "tests" / "fixtures" / "flat-run-config.json"  # as the flat TrainConfig wrote it
# the run the flat fixture records, as today's sections
FLAT_AS_NESTED = {
    "optim.lr_g": 3e-4,
    "generator.gf_dim": 8,
    "text_encoder.pooling": "cls",
    "discriminator.infomax": True,
    "discriminator.infomax_local": "region",
}


def test_network_fields_are_changed_on_the_presets_own_configs() -> None:
    config = TrainConfig(preset="tiny", generator={"gf_dim": 8}, discriminator={"df_dim": 6})
    models = config.model_configs()
    assert (models.generator.gf_dim, models.discriminator.df_dim) == (8, 6)
    assert models.generator.z_dim == 16  # everything else is the preset's
    assert TrainConfig(preset="tiny").model_configs().generator.gf_dim == 4
    # the experiments set their network fields; a run cannot set those directly
    paths = TrainConfig(
        preset="tiny", experiments=ExperimentsConfig(caption_paths=("word-coords",))
    )
    assert paths.model_configs().generator.caption_paths == ("word-coords",)
    with pytest.raises(ValueError, match="discriminator.coords is not set directly.*d_coords"):
        TrainConfig(preset="tiny", discriminator={"coords": True})
    with pytest.raises(ValueError, match="generator has no field width; valid: resolution"):
        TrainConfig(preset="tiny", generator={"width": 8})


def test_set_values_are_typed_as_their_fields() -> None:
    values = parse_overrides(
        [
            "generator.channel_multipliers=8,4,2",
            "objective.losses=sent,img",
            "data.random_flip=off",
            "optim.lr_g=2e-4",
            "run.seed=3",
            "preset=tiny",
        ]
    )
    assert values == {
        "generator.channel_multipliers": (8, 4, 2),
        "objective.losses": ("sent", "img"),
        "data.random_flip": False,
        "optim.lr_g": 2e-4,
        "run.seed": 3,
        "preset": "tiny",
    }
    config = override(TrainConfig(preset="tiny"), {"run.seed": 3, "generator.gf_dim": 8})
    assert config.run.seed == 3 and config.generator == {"gf_dim": 8}


def test_a_saved_config_reads_back_equal() -> None:
    config = TrainConfig(
        preset="tiny",
        data=DataConfig(source="somewhere", random_flip=False),
        optim=OptimConfig(steps=7),
        run=RunConfig(seed=2),
        experiments=ExperimentsConfig(swap_negatives=True, w_swap=2.0),
        generator={"gf_dim": 8},
    )
    described = describe(config)
    assert upgrade(described) == described
    assert describe(train_config(described["train"])) == described
    with pytest.raises(ValueError, match="optim has no field lr; valid: steps"):
        train_config({"optim": {"lr": 1.0}})


def test_an_old_flat_config_upgrades_to_the_same_run() -> None:
    old = json.loads(FLAT.read_text())
    assert "gf_dim" in old["train"] and "frozen" in old["text_encoder"]  # really the old form
    new = upgrade(old)
    changed = dotted(new["train"])
    assert {key: changed[key] for key in FLAT_AS_NESTED} == FLAT_AS_NESTED
    assert new["train"]["data"]["source"] == "DATA" and new["train"]["optim"]["steps"] == 2
    # no change where the flat fields kept the preset's value (df_dim 0, text_encoder "")
    assert "df_dim" not in new["train"]["discriminator"]
    assert "name_or_path" not in new["train"]["text_encoder"]
    rebuilt = describe(train_config(new["train"]))
    for network in ("generator", "discriminator", "text_encoder"):
        assert rebuilt[network] == new[network], network
    assert "frozen" not in new["text_encoder"] and "attention_resolution" not in new["generator"]


@pytest.fixture
def cls_encoder(text_encoder):
    """The session's MiniLM with the cls pooling the flat fixture's run asks for."""
    from models.text_encoder import TextEncoder

    config = dataclasses.replace(text_encoder.config, pooling="cls")
    return TextEncoder(config, text_encoder.bert, text_encoder.tokenizer)


def _flat_run(run_dir: Path, data: Path, tiny_config, new_trainer, encoder) -> dict:
    """A 2-step run whose config.json and checkpoint hold the flat config, as the code before
    the sections wrote them; returns that flat record."""
    from training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

    config = tiny_config(data, FLAT_AS_NESTED)
    new_trainer(config, run_dir, text_encoder=encoder).fit()
    flat = json.loads(FLAT.read_text())
    flat["train"]["data"] = str(data)
    (run_dir / "config.json").write_text(json.dumps(flat))
    [checkpoint] = list_checkpoints(run_dir)
    state = load_checkpoint(checkpoint)
    state["config"] = flat
    save_checkpoint(checkpoint, state)
    return flat


def test_a_run_with_the_old_flat_config_resumes(
    small_shapes_root, tiny_config, new_trainer, cls_encoder, tmp_path, capsys
) -> None:
    from training.checkpoint import list_checkpoints, load_checkpoint
    from training.cli import train_main

    run_dir = tmp_path / "run"
    _flat_run(run_dir, small_shapes_root, tiny_config, new_trainer, cls_encoder)
    argv = [str(run_dir), "--steps", "3", "--no-progress"]
    # a genuinely different network is still refused, in one line, config.json untouched
    saved = (run_dir / "config.json").read_text()
    assert train_main([*argv, "--set", "generator.gf_dim=16"], text_encoder=cls_encoder) == 2
    err = capsys.readouterr().err
    assert f"{run_dir} holds a run with a different generator" in err and err.count("\n") == 1
    assert (run_dir / "config.json").read_text() == saved
    # before: KeyError / "unknown keys" on the flat dict; now it resumes as the same run
    assert train_main(argv, text_encoder=cls_encoder) == 0
    assert "resuming" in capsys.readouterr().err
    newest = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert newest["step"] == 3
    train = json.loads((run_dir / "config.json").read_text())["train"]
    assert dotted(train)["generator.gf_dim"] == 8 and train["optim"]["lr_g"] == 3e-4


def test_a_folder_of_flat_checkpoints_alone_resumes(
    small_shapes_root, tiny_config, new_trainer, cls_encoder, tmp_path, capsys
) -> None:
    from training.cli import export_main, train_main

    run_dir = tmp_path / "run"
    _flat_run(run_dir, small_shapes_root, tiny_config, new_trainer, cls_encoder)
    (run_dir / "config.json").unlink()
    assert train_main([str(run_dir), "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train"]["generator"] == {"gf_dim": 8} and out["generator"]["gf_dim"] == 8
    assert export_main([str(run_dir), str(tmp_path / "exported")]) == 0
    exported = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert exported["training"]["infomax"] is True and exported["generator"]["gf_dim"] == 8
    argv = [str(run_dir), "--steps", "3", "--no-progress"]
    assert train_main(argv, text_encoder=cls_encoder) == 0


def test_saved_artifacts_with_the_retired_fields_still_load(tmp_path) -> None:
    """An artifact exported before the retirement (the bundles up to 2026-12-07 wrote
    generator.attention_resolution = 16 and text_encoder.frozen = true) loads as before."""
    from models.artifacts import read_pipeline_config
    from models.generator import Generator

    folder = tmp_path / "old"
    shutil.copytree(ROOT / "models/bundled/default", folder)
    saved = json.loads((folder / "config.json").read_text())
    saved["generator"]["attention_resolution"] = 16
    saved["text_encoder"]["frozen"] = True
    (folder / "config.json").write_text(json.dumps(saved))
    generator_config, text_config, _ = read_pipeline_config(folder)
    assert generator_config.attention_resolution == 16  # the one value, now a constant
    generator = Generator.from_pretrained(folder)
    assert generator.config == generator_config


@pytest.mark.parametrize(
    "network, key, value",
    [("text_encoder", "frozen", False), ("generator", "attention_resolution", 8)],
)
def test_a_retired_field_with_another_value_is_refused(network, key, value, tmp_path) -> None:
    from models.artifacts import ArtifactError, read_pipeline_config

    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "models/bundled/default", bundle)
    data = json.loads((bundle / "config.json").read_text())
    data[network][key] = value
    (bundle / "config.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"{key} is retired: only .* ever worked") as error:
        read_pipeline_config(bundle)
    assert "\n" not in str(error.value)


def test_torchruns_environment_is_read_in_one_place() -> None:
    """WORLD_SIZE was read in three places (the CLI twice, the shards); now distributed.py."""
    readers = [
        path.relative_to(ROOT).as_posix()
        for package in ("training", "models", "xmc_service")
        for path in (ROOT / package).rglob("*.py")
        if 'environ.get("WORLD_SIZE"' in path.read_text() or "environ['WORLD" in path.read_text()
    ]
    assert readers == ["training/distributed.py"]


def test_the_experiments_section_is_read_by_its_hook_and_the_network_configs_alone() -> None:
    """`config.experiments` is read by the trainer's one hook and `model_configs` alone."""
    import ast

    readers = set()
    for package in ("training", "models", "xmc_service"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            if any(
                isinstance(n, ast.Attribute) and n.attr == "experiments" for n in ast.walk(tree)
            ):
                readers.add(path.relative_to(ROOT).as_posix())
    assert readers == {"training/config.py", "training/experiments/__init__.py"}


def test_every_set_in_the_docs_and_scripts_names_a_field() -> None:
    """The README's, the docs' and the scripts' `--set KEY=...` use today's names (the logs of
    past runs under docs/experiments/gpu-runs/ keep the commands they ran)."""
    import re

    from training.config import NETWORKS, SECTIONS

    fields = {"preset"}
    for section, kind in {**SECTIONS, **NETWORKS}.items():
        fields |= {f"{section}.{f.name}" for f in dataclasses.fields(kind)}
    texts = [ROOT / "README.md", ROOT / "models/bundled/default/MODEL_CARD.md"]
    texts += [p for p in (ROOT / "docs").rglob("*.md") if "gpu-runs" not in p.parts]
    texts += sorted((ROOT / "scripts").glob("*.sh"))
    found = 0
    for path in texts:
        for key in re.findall(r"--set[\s\"']+([a-z_.0-9]+)=", path.read_text()):
            found += 1
            assert key in fields, f"{path.relative_to(ROOT)}: --set {key}"
    assert found > 20  # the pattern does find them
