"""Benchmark: the generator's inference engines on the CPU, in one run.

    python -m benchmarks.generator_engines [--model DIR] [--batch 32] [--seconds 4] [--against DIR]

Times images/s at batch `--batch` for the plain trained generator (the old path), the folded
inference generator on PyTorch (`fold_norms`, channels_last) and the same generator on ONNX
Runtime (`models/onnx_backend.py`, the CPU default), each at 1 and 2 threads, on cached text
features, and prints each one's ratio to the plain generator at 2 threads. `--against DIR` also
times another artifact's generator on ONNX Runtime in the same run (e.g. the bundle before),
for the ratio of two models' inference cost.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable


def images_per_second(forward: Callable[[], object], batch: int, seconds: float) -> float:
    import torch

    with torch.inference_mode():
        for _ in range(3):  # the first calls of a shape are slower
            forward()
        images, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            forward()
            images += batch
    return images / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generator_engines")
    parser.add_argument("--model", metavar="DIR", help="artifact (default: the bundled one)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="per engine and thread count")
    parser.add_argument("--against", metavar="DIR", help="another artifact, timed on ONNX Runtime")
    args = parser.parse_args(argv)

    import torch

    from models import XMCGANPipeline
    from models.onnx_backend import OnnxGenerator
    from models.runtime import sample_z

    def onnx_inputs(pipe: XMCGANPipeline) -> tuple:
        texts = [f"a red circle left of a blue square {i}" for i in range(32)]
        f = pipe.encode_text(texts).select([i % 32 for i in range(args.batch)])
        z = sample_z(list(range(args.batch)), pipe.generator.config.z_dim)
        return z, f.sentence, f.words, f.mask

    pipe = XMCGANPipeline.from_pretrained(args.model, device="cpu", backend="torch")
    inputs = onnx_inputs(pipe)
    other = args.against and XMCGANPipeline.from_pretrained(args.against, device="cpu")
    rates: dict[tuple[str, int], float] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        onnx = OnnxGenerator(pipe.inference_generator, inputs, threads)
        onnx.check(pipe.inference_generator, inputs)
        engines: dict[str, Callable[[], object]] = {
            "plain PyTorch generator": lambda: pipe.generator(*inputs),
            "folded + channels_last, PyTorch": lambda: pipe.inference_generator(*inputs),
            "folded, ONNX Runtime": functools.partial(onnx, *inputs),
        }
        if other:
            theirs = onnx_inputs(other)
            engines["--against's, ONNX Runtime"] = functools.partial(
                OnnxGenerator(other.inference_generator, theirs, threads), *theirs
            )
        for name, forward in engines.items():
            rates[name, threads] = images_per_second(forward, args.batch, args.seconds)
    import onnxruntime

    base = rates["plain PyTorch generator", 2]
    print(
        f"batch {args.batch}, {args.seconds:g} s each, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; img/s (x the plain generator at 2 threads)"
    )
    print(f"{'engine':<34} {'1 thread':>16} {'2 threads':>16}")
    for name in dict.fromkeys(name for name, _ in rates):
        cells = [f"{rates[name, t]:8.1f} ({rates[name, t] / base:4.2f}x)" for t in (1, 2)]
        print(f"{name:<34} {cells[0]:>16} {cells[1]:>16}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
