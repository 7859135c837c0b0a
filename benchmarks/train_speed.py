"""Training-speed benchmark: `python -m benchmarks.train_speed [--quick] [--device cpu|cuda]`.

Prints, all measured in this one run:
  1. the GEMM peak of this machine (float32 `torch.mm` 2048x2048 on CPU, bf16 8192x8192 on GPU),
  2. train throughput and model-FLOP utilisation (MFU = counted FLOP/s / GEMM peak) of the
     shapes-64 and coco-128 widths, FLOPs counted by `FlopCounterMode` around a real
     `Trainer.train_step` (text encoder, two D updates, one G update, forward and backward),
  3. one full training step at 128 px, gf = df = 32, batch 16 (two sub-batches of 8), all
     contrastive losses, no pretrained CNN: the official recipe's step at a CPU width (no ratio
     to the official JAX code: this script does not run JAX, and a ratio needs one run).

When bert-base-uncased cannot be loaded offline, the 768-d text encoder is a randomly
initialised BertModel of the same size (same FLOPs, meaningless features), and the output says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Case:
    """One benchmarked training configuration."""

    label: str
    preset: str
    batch_size: int  # split into 2 sub-batches (official d_step_per_g_step = 2)
    timed_steps: int
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    case: Case
    step_flops: float  # counted FLOPs of one train_step (text encoder included)
    text_flops: float  # of which the frozen text encoder
    step_seconds: list[float]  # wall-clock
    step_cpu_seconds: list[float]  # this process's CPU time (all threads): steadier when shared
    text_seconds: float  # median time of encoding one batch of captions
    text_encoder: str
    gf_dim: int
    df_dim: int
    resolution: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_seconds)


# ---------------------------------------------------------------------------- measurements
def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def gemm_peak(device: str, reps: int) -> tuple[float, float, str]:
    """Best-of-reps GFLOP/s of one square matmul (float32 2048 on CPU, bf16 8192 on GPU), per
    wall-clock second and per second of this process's CPU time (all threads)."""
    import torch

    n, dtype = (2048, torch.float32) if device == "cpu" else (8192, torch.bfloat16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool, allocations
    best = best_cpu = float("inf")
    for _ in range(reps):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    flops = 2 * n**3 / 1e9
    return flops / best, flops / best_cpu, f"{str(dtype).replace('torch.', '')} mm {n}x{n}"


def text_encoder_or_random(config, notes: list[str]):
    """The configured text encoder, or, when it cannot be loaded (no hub access), a random BERT
    of the same size: the FLOPs and timings are those of the real model."""
    from models.text_encoder import TextEncoder, TextEncoderLoadError, resolve_bert_path

    try:
        return TextEncoder.from_config(config)
    except TextEncoderLoadError:
        from transformers import AutoTokenizer, BertConfig, BertModel

        heads = config.hidden_size // 64
        bert = BertModel(
            BertConfig(
                hidden_size=config.hidden_size,
                num_hidden_layers=12,
                num_attention_heads=heads,
                intermediate_size=4 * config.hidden_size,
            ),
            add_pooling_layer=False,
        )
        # MiniLM's tokenizer is the same uncased 30522-token WordPiece as BERT-base
        tokenizer = AutoTokenizer.from_pretrained(resolve_bert_path("minilm"))
        note = (
            f"{config.name_or_path} is not available offline: using a randomly "
            f"initialised BertModel (hidden {config.hidden_size}, 12 layers, "
            f"{heads} heads) of the same size"
        )
        if note not in notes:
            notes.append(note)
        return TextEncoder(config, bert, tokenizer)


def make_trainer(case: Case, data: Path, work: Path, extra: dict[str, Any], notes: list[str]):
    from training.config_io import apply_overrides, train_config
    from training.trainer import Trainer

    values = {
        "preset": case.preset,
        "data.source": str(data),
        "optim.batch_size": case.batch_size,
        "optim.d_steps": 2,
        "run.num_workers": 0,
        "objective.image_encoder": "",
        "data.text_cache": "off",  # encode at every step (--set data.text_cache=memory caches)
        "optim.steps": 10**6,
        **case.overrides,
        **extra,
    }
    config = train_config(apply_overrides({}, values))
    text_encoder = text_encoder_or_random(config.model_configs().text_encoder, notes)
    return Trainer(config, work / case.label, text_encoder=text_encoder, progress=False)


def count_step_flops(trainer, batch: dict[str, Any]) -> tuple[float, float]:
    """FLOPs of one real train_step (it also serves as the warm-up step) and of its text
    encoding alone."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as text_counter:
        trainer.text_encoder.encode(batch["caption"], trainer.device)
    with FlopCounterMode(display=False) as step_counter:
        trainer.train_step(batch)
    return float(step_counter.get_total_flops()), float(text_counter.get_total_flops())


def time_steps(trainer, batches, count: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of `count` train steps."""
    wall, cpu = [], []
    for _ in range(count):
        batch = next(batches)
        _sync(trainer.device.type)
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.train_step(batch)  # ends in .item(): synchronous on GPU too
        _sync(trainer.device.type)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def time_text_encoder(trainer, batches, reps: int = 3) -> float:
    """Median seconds of encoding one batch of captions (part of every step)."""
    captions = next(batches)["caption"]
    seconds = []
    for _ in range(reps):
        _sync(trainer.device.type)
        start = time.perf_counter()
        trainer.text_encoder.encode(captions, trainer.device)
        _sync(trainer.device.type)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def run_case(case: Case, data: Path, work: Path, extra: dict[str, Any], notes: list[str]) -> Result:
    trainer = make_trainer(case, data, work, extra, notes)
    batches = trainer.batches()
    step_flops, text_flops = count_step_flops(trainer, next(batches))
    wall, cpu = time_steps(trainer, batches, case.timed_steps)
    g, d = trainer.model_configs.generator, trainer.model_configs.discriminator
    text = trainer.model_configs.text_encoder
    return Result(
        case,
        step_flops,
        text_flops,
        wall,
        cpu,
        time_text_encoder(trainer, batches),
        f"{Path(text.name_or_path).name} ({text.hidden_size}-d)",
        g.gf_dim,
        d.df_dim,
        g.resolution,
    )


# ---------------------------------------------------------------------------- report
def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(row: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([fmt(header), line] + [fmt(r) for r in rows])


def throughput_table(results: list[Result], peak_gflops: float, peak_cpu_gflops: float) -> str:
    rows = []
    for r in results:
        achieved = r.step_flops / r.median_s / 1e9
        per_cpu_second = r.step_flops / statistics.median(r.step_cpu_seconds) / 1e9
        rows.append(
            [
                r.case.label,
                f"{r.resolution}",
                f"{r.gf_dim}/{r.df_dim}",
                r.text_encoder,
                f"{r.case.batch_size} (2x{r.case.batch_size // 2})",
                f"{r.step_flops / 1e9:.1f}",
                f"{r.text_flops / 1e9:.1f}",
                f"{r.median_s:.2f} ({len(r.step_seconds)})",
                f"{statistics.median(r.step_cpu_seconds):.2f}",
                f"{r.case.batch_size / r.median_s:.2f}",
                f"{achieved:.1f}",
                f"{100 * achieved / peak_gflops:.1f}%",
                f"{100 * per_cpu_second / peak_cpu_gflops:.1f}%",
            ]
        )
    return _table(
        [
            "config",
            "px",
            "gf/df",
            "text encoder",
            "batch",
            "GFLOP/step",
            "of which text",
            "s/step (n)",
            "CPU s/step",
            "img/s",
            "GFLOP/s",
            "MFU",
            "MFU (CPU time)",
        ],
        rows,
    )


def official_table(result: Result) -> str:
    rows = [
        [
            "this code (PyTorch)",
            f"{result.median_s:.2f}",
            f"{min(result.step_seconds):.2f}",
            f"{max(result.step_seconds):.2f}",
            f"{statistics.median(result.step_cpu_seconds):.2f}",
        ],
        ["  of which text encoder", f"{result.text_seconds:.2f}", "", "", ""],
    ]
    header = ["one step, 128 px, gf=df=32, batch 16 (2x8)", "median s", "min s", "max s", "CPU s"]
    return _table(header, rows)


# ---------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.train_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="fewer steps and reps (about 2 min)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu (float32) or cuda (bf16 autocast, channels_last: the trainer's GPU defaults)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument(
        "--only",
        choices=("gemm", "throughput", "official"),
        action="append",
        help="run only these sections (repeatable); the GEMM peak always runs",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig override for every case, e.g. --set run.channels_last=on",
    )
    return p


def cases(quick: bool, device: str) -> tuple[list[Case], Case]:
    scale = 4 if device == "cuda" else 1  # a GPU needs bigger batches to be measured at all
    timed = 1 if quick else 3
    throughput = [
        Case("shapes-64", "shapes-64", 8 * scale, timed),
        Case("coco-128", "coco-128", 4 * scale, 1),
    ]
    official = Case(
        "official-step",
        "coco-128",
        16,
        1 if quick else 3,
        {"generator.gf_dim": 32, "discriminator.df_dim": 32},  # all three losses (the default)
    )
    return throughput, official


def run_sections(
    args, sections: set[str], extra: dict[str, Any], peak: float, peak_cpu: float, notes: list[str]
) -> None:
    """Sections 2 and 3, on a 128 px shapes set made for the run."""
    throughput, official = cases(args.quick, args.device)
    with tempfile.TemporaryDirectory(prefix="xmc-bench-") as tmp:
        from training.shapes.scenes import make_benchmark

        data = Path(tmp) / "data"
        make_benchmark(
            data, size=128, seed=0, n_train=64, n_val=8, n_test_heldout=0, progress=False
        )
        work = Path(tmp) / "runs"
        if "throughput" in sections:
            results = [run_case(case, data, work, extra, notes) for case in throughput]
            print(
                "2. Train throughput (one step = text encoder + 2 D updates + 1 G update; "
                "MFU = counted FLOP/s / GEMM peak;\n   the CPU-time MFU divides "
                "FLOPs per CPU-second by the GEMM's)"
            )
            print(throughput_table(results, peak, peak_cpu) + "\n")
        if "official" in sections:
            result = run_case(official, data, work, extra, notes)
            print(
                "3. The official step (timed steps after one warm-up step; "
                f"{result.step_flops / 1e9:.0f} GFLOP, "
                f"{100 * result.step_flops / result.median_s / 1e9 / peak:.1f}% MFU)"
            )
            print(official_table(result) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer picks a GPU whenever it sees one
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download a BERT in a benchmark
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks.train_speed: error: --device cuda but no CUDA device is visible")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from training.config_io import parse_overrides

        extra = parse_overrides(args.set)
    except ValueError as e:
        print(f"benchmarks.train_speed: error: {e}")
        return 2
    sections = set(args.only or ("gemm", "throughput", "official"))
    notes: list[str] = []
    started = time.perf_counter()
    where = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}"
    )
    print(
        f"benchmarks.train_speed: torch {torch.__version__}, {where}"
        f"{', overrides ' + str(extra) if extra else ''}"
    )
    reps = 3 if args.quick else 8
    peak, peak_cpu, what = gemm_peak(args.device, reps)
    print(
        f"\n1. GEMM peak ({what}, best of {reps}): {peak:.1f} GFLOP/s wall-clock, "
        f"{peak_cpu:.1f} GFLOP per CPU-second\n"
    )
    run_sections(args, sections, extra, peak, peak_cpu, notes)
    for note in notes:
        print(f"note: {note}")
    print(
        f"note: total {time.perf_counter() - started:.0f} s, load average "
        f"{os.getloadavg()[0]:.1f}. s/step is wall-clock (MFU uses it); CPU s/step is this "
        "process's CPU time over all threads, steadier on a machine shared with other "
        "processes, where wall-clock figures are pessimistic"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
