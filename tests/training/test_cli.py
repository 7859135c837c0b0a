"""`xmc-train` and `xmc-export`: flags, errors, bit-exact resume, SIGTERM, and the exported
artifact generating through the pipeline. Tiny preset, CPU, a few steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.states import assert_identical, trained_state

pytestmark = pytest.mark.usefixtures("single_thread")


def _flags(data: Path, steps: int) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--no-progress",
        "--set",
        "run.log_every=1",
        "--set",
        "run.sample_every=1000",
    ]


def _load(run_dir: Path) -> dict:
    from training.checkpoint import list_checkpoints, load_checkpoint

    return load_checkpoint(list_checkpoints(run_dir)[-1])


@pytest.fixture
def train(train_cli, capsys):
    """xmc-train in this process -> (exit status, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        code = train_cli(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, shapes_root, train_cli) -> dict[str, Path]:
    """Through the CLI: 4 straight steps, and 2 steps resumed to 4 (stderr kept)."""
    root = tmp_path_factory.mktemp("cli-runs")
    straight, resumed = root / "straight", root / "resumed"
    assert train_cli([str(straight)] + _flags(shapes_root, 4)) == 0
    assert train_cli([str(resumed)] + _flags(shapes_root, 2)) == 0
    assert _load(resumed)["step"] == 2
    # resuming needs only the run directory and the new step count
    assert train_cli([str(resumed), "--steps", "4", "--no-progress"]) == 0
    return {"straight": straight, "resumed": resumed}


def test_cli_resume_is_bit_exact(cli_runs):
    straight, resumed = _load(cli_runs["straight"]), _load(cli_runs["resumed"])
    assert resumed["step"] == 4
    assert_identical(trained_state(straight), trained_state(resumed))


def test_resume_message_names_the_step(cli_runs, train):
    code, _, err = train([str(cli_runs["resumed"]), "--steps", "4", "--no-progress"])
    assert code == 0
    assert f"resuming {cli_runs['resumed']} at step 4" in err and "done: 4 steps" in err


def test_dry_run_prints_the_resolved_config(tmp_path, train):
    run_dir = tmp_path / "run"
    code, out, _ = train(
        [
            str(run_dir),
            "--preset",
            "tiny",
            "--losses",
            "sent,word",
            "--infomax",
            "--set",
            "optim.lr_d=2e-4",
            "--set",
            "generator.gf_dim=8",
            "--set",
            "data.random_flip=false",
            "--batch-size",
            "12",
            "--dry-run",
        ],
    )
    assert code == 0
    described = json.loads(out)
    train = described["train"]
    assert train["preset"] == "tiny" and train["optim"]["lr_d"] == 2e-4
    assert train["optim"]["batch_size"] == 12 and train["objective"]["losses"] == ["sent", "word"]
    assert train["data"]["random_flip"] is False and train["optim"]["lr_g"] == 1e-4  # default
    # the preset's network configs, changed where the flags say and nowhere else
    assert train["generator"] == {"gf_dim": 8} and train["discriminator"] == {"infomax": True}
    assert described["generator"]["gf_dim"] == 8 and described["discriminator"]["df_dim"] == 4
    assert described["discriminator"]["infomax"] is True
    assert described["text_encoder"]["hidden_size"] == described["generator"]["word_dim"]
    assert not run_dir.exists()  # a dry run writes nothing


def test_dry_run_of_a_run_shows_its_saved_config(cli_runs, train):
    code, out, _ = train([str(cli_runs["straight"]), "--set", "optim.lr_g=3e-4", "--dry-run"])
    assert code == 0
    train = json.loads(out)["train"]
    assert train["preset"] == "tiny" and train["optim"]["steps"] == 4
    assert train["optim"]["lr_g"] == 3e-4


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--preset", "coco-512"], "unknown preset 'coco-512'"),
        (["--losses", "sent,pixel"], "unknown losses ['pixel']"),
        (["--set", "learning_rate=1"], "--set 'learning_rate=1'"),
        (["--set", "optim.lr=1"], "optim has no field lr; valid: steps, batch_size"),
        (["--set", "lr_g=1"], "lr_g is now optim.lr_g"),
        (["--set", "generator.gf_dim=wide"], "generator.gf_dim is int"),
        (["--set", "generator.word_dim=8"], "follows the text encoder's hidden size"),
        (["--set", "text_encoder.frozen=true"], "text_encoder has no field frozen"),
        (["--set", "generator.attention_resolution=8"], "generator has no field attention_res"),
        (["--set", "optim.global_batch=56", "--batch-size", "8"], "both set"),
        (["--set", "generator.resolution=64"], "generator: resolution 64 needs 4 channel"),
        (
            ["--set", "generator.resolution=64", "--set", "generator.channel_multipliers=4,2,1,1"],
            "generator and discriminator must share resolution",
        ),
        (["--set", "lr_d"], "expected KEY=VALUE"),
        (["--set", "optim.steps=many"], "many"),
        (["--set", "discriminator.infomax=maybe"], "expected true/false"),
        (["--batch-size", "9"], "optim.batch_size (9) must split into optim.d_steps (2)"),
        (["--adversarial", "wasserstein"], "adversarial must be"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(flags, message, tmp_path, train):
    code, out, err = train([str(tmp_path / "run"), "--preset", "tiny", "--dry-run"] + flags)
    assert code == 2 and out == ""
    assert err.startswith("xmc-train: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err


def test_malformed_flag_value_is_an_argparse_error(tmp_path, capsys):
    from training.cli import train_main

    with pytest.raises(SystemExit) as exit_info:
        train_main([str(tmp_path / "run"), "--steps", "ten"])
    assert exit_info.value.code == 2
    assert "--steps: invalid int value: 'ten'" in capsys.readouterr().err


def test_missing_data_dir_is_named(tmp_path, train):
    missing = tmp_path / "no-such-data"
    code, _, err = train(
        [str(tmp_path / "run"), "--preset", "tiny", "--data", str(missing), "--no-progress"]
    )
    assert code == 2 and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    code, _, err = train([str(tmp_path / "run"), "--preset", "tiny", "--no-progress"])
    assert code == 2 and "--data" in err


def test_missing_image_encoder_dir_is_a_clear_error(shapes_root, tmp_path, train):
    missing = tmp_path / "no-resnet"
    code, _, err = train(
        [str(tmp_path / "run"), "--image-encoder", str(missing)] + _flags(shapes_root, 1)
    )
    assert code == 2 and err.startswith("xmc-train: error: ") and str(missing) in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags",
    [["--set", "optim.d_steps=0"], ["--text-encoder", "/nonexistent"]],
    ids=["d_steps=0", "missing-text-encoder"],
)
def test_more_bad_flags_give_one_line_and_exit_2(flags, tmp_path, train):
    code, _, err = train([str(tmp_path / "run"), "--preset", "tiny", "--dry-run"] + flags)
    assert code == 2 and err.startswith("xmc-train: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "flags, part",
    [(["--set", "generator.gf_dim=8"], "generator"), (["--infomax"], "discriminator")],
)
def test_resuming_with_another_architecture_is_refused(flags, part, cli_runs, train):
    run_dir = cli_runs["straight"]
    saved = (run_dir / "config.json").read_text()
    code, _, err = train([str(run_dir), "--no-progress"] + flags)
    assert code == 2 and f"different {part}" in err and str(run_dir) in err
    assert (run_dir / "config.json").read_text() == saved
    assert _load(run_dir)["step"] == 4


def test_sigterm_to_the_process_group_with_workers_saves_and_exits_0(shapes_root, tmp_path):
    """`timeout`, `kill -TERM -PGID` and a terminal's Ctrl-C signal every process of the group:
    the DataLoader workers must not die first and turn the stop into an error."""
    run_dir = tmp_path / "run"
    flags = _flags(shapes_root, 100000)
    flags[flags.index("--num-workers") + 1] = "2"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from training.cli import train_main; raise SystemExit(train_main())",
            str(run_dir),
            *flags,
        ],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"),
    )
    try:
        stats = run_dir / "stats.jsonl"
        deadline = time.monotonic() + 150
        while not (stats.exists() and len(stats.read_text().splitlines()) >= 2):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no training step logged in 150 s"
            time.sleep(0.2)
        os.killpg(child.pid, signal.SIGTERM)  # the trainer and both workers
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 0, err
    step = _load(run_dir)["step"]
    assert step >= 2 and f"interrupted at step {step}; checkpoint saved" in err
    assert "Traceback" not in err and "killed by signal" not in err


def test_sigterm_saves_a_checkpoint_then_the_run_resumes(shapes_root, tmp_path, train):
    run_dir = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from training.cli import train_main; raise SystemExit(train_main())",
            str(run_dir),
        ]
        + _flags(shapes_root, 1000),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stats = run_dir / "stats.jsonl"
        deadline = time.monotonic() + 150
        while not (stats.exists() and stats.read_text().strip()):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no training step logged in 150 s"
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    checkpoint = _load(run_dir)
    step = checkpoint["step"]
    assert 0 < step < 1000 and "Traceback" not in err
    saved = run_dir / f"checkpoint-{step:07d}.pt"
    assert f"interrupted at step {step}; checkpoint saved to {saved}" in err
    assert not list(run_dir.glob("*.tmp"))
    code, _, err = train([str(run_dir), "--steps", str(step + 1), "--no-progress"])
    assert code == 0 and f"at step {step}" in err
    assert _load(run_dir)["step"] == step + 1


def test_export_writes_an_artifact_the_pipeline_generates_with(cli_runs, tmp_path, capsys):
    from safetensors.torch import load_file

    from models.pipeline import XMCGANPipeline
    from training.cli import export_main

    out = tmp_path / "artifact"
    assert export_main([str(cli_runs["resumed"]), str(out)]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-to-image" in card and "library_name: xmc" in card
    config = json.loads((out / "config.json").read_text())
    assert config["model_id"] == "resumed" and config["training"]["steps"] == 4
    assert config["training"]["images"] == 32
    ema = _load(cli_runs["resumed"])["ema"]
    assert_identical(load_file(str(out / "model.safetensors")), ema)
    pipe = XMCGANPipeline.from_pretrained(out, device="cpu")
    assert_identical(pipe.generator.state_dict(), ema)
    live = tmp_path / "live"
    assert export_main([str(cli_runs["resumed"]), str(live), "--weights", "generator"]) == 0
    assert_identical(
        load_file(str(live / "model.safetensors")), _load(cli_runs["resumed"])["generator"]
    )
    assert json.loads((live / "config.json").read_text())["training"]["weights"] == "generator"
    images = pipe(["a small red circle left of a blue square"], seed=0, num_images_per_caption=2)
    assert [(im.size, im.mode) for im in images] == [((32, 32), "RGB")] * 2
    assert images[0].tobytes() != images[1].tobytes()  # two seeds, two images


def test_export_of_a_non_run_is_a_clear_error(tmp_path, capsys):
    from training.cli import export_main

    assert export_main([str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xmc-export: error: ") and "not a training run" in err
    assert not (tmp_path / "out").exists()
