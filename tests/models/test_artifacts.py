"""save_pretrained / from_pretrained: config.json + safetensors, strict keys, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.artifacts import CONFIG_NAME, WEIGHTS_NAME, ArtifactError
from models.discriminator import Discriminator
from models.generator import Generator

pytestmark = pytest.mark.usefixtures("single_thread")


def generator_inputs(generator: Generator, batch: int = 2):
    rng = torch.Generator().manual_seed(0)
    c = generator.config
    words = torch.randn(batch, 6, c.word_dim, generator=rng)
    mask = torch.arange(6)[None, :] < torch.tensor([4, 6])[:batch, None]
    return (
        torch.randn(batch, c.z_dim, generator=rng),
        torch.randn(batch, c.sentence_dim, generator=rng),
        words,
        mask,
    )


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.fixture()
def saved_generator(tmp_path: Path) -> tuple[Generator, Path]:
    torch.manual_seed(1)
    generator = Generator.from_preset("tiny")
    generator(*generator_inputs(generator))  # train-mode step: non-default BN running stats
    generator.eval()
    generator.save_pretrained(tmp_path)
    return generator, tmp_path


def test_generator_round_trip(saved_generator) -> None:
    generator, directory = saved_generator
    loaded = Generator.from_pretrained(directory)
    assert not loaded.training
    assert loaded.config == generator.config
    assert_same_state(generator, loaded)
    assert (generator.spatial_blocks[0].norm1.norm.running_mean != 0).any()  # stats travelled
    inputs = generator_inputs(generator)
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), generator(*inputs))


def test_discriminator_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(2)
    discriminator = Discriminator.from_preset("tiny", infomax=True)
    images, sentence = torch.rand(2, 3, 32, 32), torch.randn(2, 384)
    discriminator(images, sentence)  # train mode: one power iteration moves the SN vectors
    discriminator.eval()
    discriminator.save_pretrained(tmp_path)
    loaded = Discriminator.from_pretrained(tmp_path)
    assert loaded.config == discriminator.config and loaded.config.infomax
    assert_same_state(discriminator, loaded)
    assert any(k.endswith("_u") for k in loaded.state_dict())  # spectral-norm state saved
    with torch.no_grad():
        a, b = discriminator(images, sentence), loaded(images, sentence)
    for name in ("logits", "features", "sentence", "regions", "infomax_local", "infomax_global"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_artifact_is_config_json_and_safetensors_only(saved_generator) -> None:
    generator, directory = saved_generator
    assert sorted(p.name for p in directory.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((directory / CONFIG_NAME).read_text())
    assert config["kind"] == "generator"
    assert config["generator"]["resolution"] == 32
    assert config["generator"]["channel_multipliers"] == [4, 2, 1]
    # safetensors: an 8-byte little-endian header length, then a JSON header (no pickle opcode)
    raw = (directory / WEIGHTS_NAME).read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    assert set(header) - {"__metadata__"} == set(generator.state_dict())


def rewrite_weights(directory: Path, edit) -> None:
    state = load_file(str(directory / WEIGHTS_NAME))
    edit(state)
    save_file(state, str(directory / WEIGHTS_NAME))


def test_missing_key_is_named(saved_generator) -> None:
    _, directory = saved_generator
    rewrite_weights(directory, lambda state: state.pop("stem.weight"))
    with pytest.raises(
        ArtifactError, match=r"missing keys \['stem.weight'\], unexpected keys \[\]"
    ):
        Generator.from_pretrained(directory)


def test_unexpected_key_is_named(saved_generator) -> None:
    _, directory = saved_generator
    rewrite_weights(directory, lambda state: state.update(extra_head=torch.zeros(3)))
    with pytest.raises(ArtifactError, match=r"missing keys \[\], unexpected keys \['extra_head'\]"):
        Generator.from_pretrained(directory)


def test_shape_mismatch_is_an_artifact_error(saved_generator) -> None:
    _, directory = saved_generator
    rewrite_weights(directory, lambda state: state.update({"stem.bias": torch.zeros(5)}))
    with pytest.raises(ArtifactError, match="stem.bias"):
        Generator.from_pretrained(directory)


def test_wrong_kind_is_an_artifact_error(saved_generator, tmp_path: Path) -> None:
    _, directory = saved_generator
    with pytest.raises(ArtifactError, match="holds no 'discriminator' config .*'generator'"):
        Discriminator.from_pretrained(directory)
    Discriminator.from_preset("tiny").save_pretrained(tmp_path / "d")
    with pytest.raises(ArtifactError, match="holds no 'generator' config .*'discriminator'"):
        Generator.from_pretrained(tmp_path / "d")


def test_missing_files_are_artifact_errors(saved_generator, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="config.json not found"):
        Generator.from_pretrained(tmp_path / "nowhere")
    _, directory = saved_generator
    (directory / WEIGHTS_NAME).unlink()
    with pytest.raises(ArtifactError, match="model.safetensors not found"):
        Generator.from_pretrained(directory)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"generator": {"resolution": 32,', "is not valid JSON"),
        ('{"generator": {"resolution": 32, "colour": "red"}}', r"unknown keys \['colour'\]"),
        ('{"generator": {"resolution": 48}}', "power of two"),
        (
            '{"generator": {"resolution": 64, "channel_multipliers": [4, 2, 1]}}',
            "needs 4 channel multipliers",
        ),
        ('{"kind": "generator"}', "holds no 'generator' config"),
    ],
)
def test_malformed_config_is_an_artifact_error(saved_generator, text: str, message: str) -> None:
    _, directory = saved_generator
    (directory / CONFIG_NAME).write_text(text)
    with pytest.raises(ArtifactError, match=message) as error:
        Generator.from_pretrained(directory)
    assert str(directory / CONFIG_NAME) in str(error.value)


@pytest.mark.parametrize("text", ["[]", '"a string"', '{"generator": {"resolution": "32"}}'])
def test_config_of_the_wrong_type_is_an_artifact_error(saved_generator, text: str) -> None:
    _, directory = saved_generator
    (directory / CONFIG_NAME).write_text(text)
    with pytest.raises(ArtifactError, match="config.json"):
        Generator.from_pretrained(directory)


def test_artifact_files_are_readable_by_other_users(tmp_path) -> None:
    """A container user other than the exporter (e.g. uid 10001) must read a mounted export."""
    import os
    import stat

    generator = Generator.from_preset("tiny")
    old = os.umask(0o022)
    try:
        generator.save_pretrained(tmp_path)
    finally:
        os.umask(old)
    for name in (CONFIG_NAME, "model.safetensors"):
        mode = (tmp_path / name).stat().st_mode
        assert mode & stat.S_IROTH and mode & stat.S_IRGRP, oct(mode)


# -- bad model directories (issue 13): each refused at load, in one line naming the file -------


def _config(directory: Path) -> dict:
    return json.loads((directory / CONFIG_NAME).read_text())


def _edit_config(directory: Path, **generator: object) -> None:
    data = _config(directory)
    data["generator"].update(generator)
    (directory / CONFIG_NAME).write_text(json.dumps(data))


def _nan_weight(directory: Path) -> None:
    state = load_file(str(directory / WEIGHTS_NAME))
    state["stem.weight"][0, 0] = float("nan")
    save_file(state, str(directory / WEIGHTS_NAME))
    data = _config(directory)
    data.pop("weights_sha256")  # an artifact without a checksum: the NaN itself must be seen
    (directory / CONFIG_NAME).write_text(json.dumps(data))


def _flip_bytes(directory: Path) -> None:
    raw = bytearray((directory / WEIGHTS_NAME).read_bytes())
    for i in range(len(raw) - 4096, len(raw)):
        raw[i] ^= 0x10  # inside the tensor data, past the header
    (directory / WEIGHTS_NAME).write_bytes(bytes(raw))


def _huge_header(directory: Path) -> None:
    raw = (directory / WEIGHTS_NAME).read_bytes()
    (directory / WEIGHTS_NAME).write_bytes((2**40).to_bytes(8, "little") + raw[8:])


def _link_outside(directory: Path) -> None:
    outside = directory.parent / f"{directory.name}-elsewhere.safetensors"
    (directory / WEIGHTS_NAME).rename(outside)
    (directory / WEIGHTS_NAME).symlink_to(outside)


BAD_MODEL_DIRS = {
    "nan weight": (_nan_weight, WEIGHTS_NAME, "stem.weight holds NaN"),
    "nan rho0": (lambda d: _edit_config(d, rho0=float("nan")), CONFIG_NAME, "rho0"),
    "gf_dim 300": (lambda d: _edit_config(d, gf_dim=300), WEIGHTS_NAME, "but the config builds"),
    "gf_dim 0": (lambda d: _edit_config(d, gf_dim=0), CONFIG_NAME, "gf_dim must be"),
    "gf_dim huge": (lambda d: _edit_config(d, gf_dim=10**9), CONFIG_NAME, "gf_dim must be"),
    "z_dim bool": (lambda d: _edit_config(d, z_dim=True), CONFIG_NAME, "z_dim"),
    "multipliers nested": (
        lambda d: _edit_config(d, channel_multipliers=[[4], 2, 1]),
        CONFIG_NAME,
        "channel_multipliers",
    ),
    "bn_eps zero": (lambda d: _edit_config(d, bn_eps=0), CONFIG_NAME, "bn_eps"),
    "deep json": (
        lambda d: (d / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000),
        CONFIG_NAME,
        "not valid JSON",
    ),
    "huge header": (_huge_header, WEIGHTS_NAME, "header of 1099511627776 bytes"),
    "truncated weights": (
        lambda d: (d / WEIGHTS_NAME).write_bytes((d / WEIGHTS_NAME).read_bytes()[:5000]),
        WEIGHTS_NAME,
        "header of",
    ),
    "flipped bytes": (_flip_bytes, WEIGHTS_NAME, "sha256 differs"),
    "symlink out": (_link_outside, WEIGHTS_NAME, "outside the artifact directory"),
    "bad checksum field": (
        lambda d: (d / CONFIG_NAME).write_text(json.dumps({**_config(d), "weights_sha256": ["x"]})),
        CONFIG_NAME,
        "weights_sha256",
    ),
}


@pytest.mark.parametrize("defect", list(BAD_MODEL_DIRS))
def test_a_bad_model_dir_is_refused_in_one_line_naming_the_file(
    defect: str, tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from models.pipeline import XMCGANPipeline

    directory = tmp_path / "model"
    shutil.copytree(tiny_artifact, directory)
    damage, culprit, message = BAD_MODEL_DIRS[defect]
    damage(directory)
    built_on: list[str] = []  # every Generator built before the refusal, by device
    init = Generator.__init__

    def spy(self, config) -> None:
        built_on.append(torch.empty(0).device.type)
        init(self, config)

    monkeypatch.setattr(Generator, "__init__", spy)
    with pytest.raises(ArtifactError, match=message) as error:
        XMCGANPipeline.from_pretrained(directory, device="cpu")
    text = str(error.value)
    assert str(directory / culprit) in text and "\n" not in text, text
    assert set(built_on) <= {"meta"}, built_on  # refused before any real network existed


def test_save_artifact_writes_a_checksum_that_load_verifies(tiny_artifact: Path) -> None:
    from models.artifacts import file_sha256

    data = _config(tiny_artifact)
    assert data["weights_sha256"] == file_sha256(tiny_artifact / WEIGHTS_NAME)


def test_a_link_inside_the_model_dir_is_followed(tiny_artifact: Path, tmp_path: Path) -> None:
    import shutil

    from models.pipeline import XMCGANPipeline

    directory = tmp_path / "model"
    shutil.copytree(tiny_artifact, directory)
    (directory / WEIGHTS_NAME).rename(directory / "weights-v1.safetensors")
    (directory / WEIGHTS_NAME).symlink_to("weights-v1.safetensors")
    assert XMCGANPipeline.from_pretrained(directory, device="cpu").resolution == 32


def test_one_line_has_one_home_and_one_behaviour():
    """Training and the models once had two `one_line`s: one capped long messages, the other
    took a DataLoader worker's traceback down to its cause. Both now do both."""
    import training.faults
    from models.artifacts import one_line

    assert training.faults.one_line is one_line
    worker = ValueError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1\ntraining.data.coco.DatasetError: cannot decode '
        "image /d/0.png: bad"
    )
    assert one_line(worker) == "cannot decode image /d/0.png: bad"
    long = one_line(ValueError("word  " * 1000))
    assert long == ("word " * 1000)[:2000] + "..."
    assert one_line(ValueError("")) == "ValueError"


def test_key_mismatch_names_ten_of_each():
    from models.artifacts import key_mismatch

    assert key_mismatch(["a", "b"], ["b", "a"]) is None
    text = key_mismatch([f"m{i:02d}" for i in range(12)] + ["kept"], ["kept", "extra"])
    assert text == f"missing keys {[f'm{i:02d}' for i in range(10)]}..., unexpected keys ['extra']"
