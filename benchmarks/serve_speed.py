"""Benchmark: the real server (uvicorn, in a subprocess) against the model's in-process limit.

    python -m benchmarks.serve_speed [--model DIR] [--seconds 24] [--max-batch-images 32]

Prints, from one run: the service's images/s and p50/p99 latency under 1, 8 and 64 closed-loop
clients; the service with batching off (max batch 1, the naive peer) under 64 clients; beside
each, the model's in-process batched images/s (the limit); and the three goals. Each level
alternates rounds of service and in-process runs (medians reported), so that a shared
machine's drifting load weighs on both sides alike.

Throughput of a level = images completed / time of the last completion before the deadline
(all clients start together), which does not depend on where the deadline falls between two
batches. Requests still in flight at the deadline are cancelled (and dropped by the server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.http_load import Connection, Server

CAPTIONS = [
    f"a {size} {color} {shape} {where}"
    for size, color, shape, where in zip(
        ["small", "large", "tiny", "big"] * 4,
        ["red", "blue", "green", "yellow", "purple", "orange", "white", "gray"] * 2,
        ["circle", "square", "triangle", "star"] * 4,
        ["on the left", "on the right", "at the top", "at the bottom"] * 4,
        strict=False,
    )
]  # 16 distinct captions; the service caches their text features, as in-process does


@dataclass(frozen=True)
class Level:
    clients: int
    images_per_s: float
    latencies_ms: tuple[float, ...]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class InProcess:
    """The model in this process: pipe.generate with cached text features, nothing else; and
    the pre-issue-13 path (the plain generator at torch's default threads) for the gain."""

    def __init__(
        self,
        model_dir: str | None,
        device: str,
        batch: int,
        threads: int | None = None,
        backend: str = "auto",
    ) -> None:
        import torch

        from models import XMCGANPipeline

        self._torch = torch
        self.pipe = XMCGANPipeline.from_pretrained(model_dir, device=device, backend=backend)
        self.threads = threads or default_threads(device) or torch.get_num_threads()
        self.default_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.batch = batch
        captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
        self.feats, self.single = (
            self.pipe.encode_text(captions),
            self.pipe.encode_text(captions[:1]),
        )
        with torch.inference_mode():
            for _ in range(3):  # warm-up: the first calls of a shape are slower
                self.pipe.generate(self.feats, list(range(batch)))
                self.pipe.generate(self.single, [0])
                self._plain()
        self.flops_per_image = self.pipe.generator_flops()

    def _plain(self) -> None:
        f = self.feats.to(self.pipe.device)
        z = self._torch.randn(len(f), self.pipe.generator.config.z_dim, device=self.pipe.device)
        self.pipe.generator(z, f.sentence, f.words, f.mask)

    def measure_plain(self, seconds: float) -> float:
        """images/s of the unfolded generator at torch's default thread count (the old path)."""
        self._torch.set_num_threads(self.default_threads)
        try:
            with self._torch.inference_mode():
                images, started = 0, time.perf_counter()
                while images < 2 * self.batch or time.perf_counter() - started < seconds:
                    self._plain()
                    images += self.batch
                return images / (time.perf_counter() - started)
        finally:
            self._torch.set_num_threads(self.threads)

    def gemm_peak(self, seconds: float = 2.0) -> float:
        """FLOP/s of a 1024^2 fp32 matmul at the model's thread count: the machine's limit."""
        a, b = self._torch.randn(1024, 1024), self._torch.randn(1024, 1024)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            a @ b
            calls += 1
        return calls * 2 * 1024**3 / (time.perf_counter() - started)

    def measure(self, seconds: float) -> tuple[float, float]:
        """(batched images/s, single-image p50 ms)."""
        batch = self.batch
        with self._torch.inference_mode():
            images, started = 0, time.perf_counter()
            while images < 2 * batch or time.perf_counter() - started < seconds:
                self.pipe.generate(self.feats, list(range(images, images + batch)))
                images += batch
            throughput = images / (time.perf_counter() - started)
            latencies: list[float] = []
            deadline = time.perf_counter() + seconds / 3
            while len(latencies) < 5 or time.perf_counter() < deadline:
                tick = time.perf_counter()
                self.pipe.generate(self.single, [len(latencies)])
                latencies.append((time.perf_counter() - tick) * 1000)
        return throughput, _percentile(latencies, 50)


def default_threads(device: str) -> int | None:
    """The service's default (xmc_service.worker.LocalModel.default_threads): cores but one on
    the CPU."""
    return max(1, (os.cpu_count() or 1) - 1) if device == "cpu" else None


async def _client_loop(client: Connection, number: int, done: list[tuple[float, float]]) -> None:
    seed = number * 1_000_000
    while True:
        body = {"prompt": CAPTIONS[seed % len(CAPTIONS)], "seed": seed}
        tick = time.perf_counter()
        status, text = await client.post("/v1/images/generations", body)
        if status != 200 or text.count(b'"b64_json"') != 1:
            raise RuntimeError(f"bench request failed: {status} {text[:200]!r}")
        now = time.perf_counter()
        done.append((now, (now - tick) * 1000))
        seed += 1


async def _measure(base: str, clients: int, seconds: float) -> Level:
    connections = [Connection(base) for _ in range(clients)]
    try:
        # connect, wait out any batch left from the last level, and fill the text cache (the
        # in-process figures use pre-encoded captions too)
        for caption in CAPTIONS:
            await connections[0].post("/v1/images/generations", {"prompt": caption})
        done: list[tuple[float, float]] = []
        started = time.perf_counter()
        tasks = [
            asyncio.create_task(_client_loop(connection, i, done))
            for i, connection in enumerate(connections)
        ]
        while time.perf_counter() - started < seconds or not done:
            await asyncio.sleep(0.05)
            for task in tasks:
                error = task.exception() if task.done() else None
                if error is not None:
                    raise error
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for connection in connections:
            connection.close()
    # queued after whatever batch is still running: the model is idle once this returns (a new
    # client: cancelled requests can leave the old pool's connections unusable)
    fence = Connection(base)
    await fence.post("/v1/images/generations", {"prompt": CAPTIONS[0]})
    fence.close()
    last = max(finished for finished, _ in done)
    return Level(clients, len(done) / (last - started), tuple(latency for _, latency in done))


@dataclass(frozen=True)
class Paired:
    """A service level and the in-process figures, measured in alternating rounds so that a
    shared machine's drifting load weighs on both alike; figures are medians over rounds."""

    clients: int
    images_per_s: float  # the service
    latencies_ms: tuple[float, ...]  # every request of every round
    limit: float  # in-process batched images/s
    single_ms: float  # in-process one-image p50
    ratio: float  # service / in-process, the median of the rounds' ratios
    plain: float  # the pre-issue-13 in-process path (unfolded, torch's default threads)

    def percentile(self, q: float) -> float:
        return _percentile(list(self.latencies_ms), q)


def measure_level(
    model: InProcess, server: Server, clients: int, seconds: float, rounds: int
) -> Paired:
    levels, limits, singles, plains = [], [], [], []
    for _ in range(rounds):
        levels.append(asyncio.run(_measure(server.base, clients, seconds / rounds)))
        limit, single_ms = model.measure(seconds / rounds)
        limits.append(limit)
        singles.append(single_ms)
        plains.append(model.measure_plain(seconds / rounds / 2))
    ratios = [level.images_per_s / limit for level, limit in zip(levels, limits, strict=True)]
    return Paired(
        clients,
        float(np.median([level.images_per_s for level in levels])),
        tuple(latency for level in levels for latency in level.latencies_ms),
        float(np.median(limits)),
        float(np.median(singles)),
        float(np.median(ratios)),
        float(np.median(plains)),
    )


def serve_and_measure(
    model: InProcess, server: Server, levels: list[int], seconds: float, rounds: int
) -> list[Paired]:
    try:
        server.wait_ready()
        return [measure_level(model, server, clients, seconds, rounds) for clients in levels]
    finally:
        server.stop()


def random_artifact(preset: str, directory: Path) -> str:
    """A random-weight artifact of `preset` (the bench measures speed, not quality)."""
    from models import XMCGANPipeline

    XMCGANPipeline.from_preset(preset, device="cpu").save_pretrained(directory)
    return str(directory)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="artifact (default: the bundled one, else a random shapes-64 generator)",
    )
    parser.add_argument(
        "--random-preset",
        metavar="NAME",
        help="bench a random-weight generator of this preset instead",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=24.0, help="per level, each side")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per level")
    parser.add_argument("--max-batch-images", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8,64", help="comma-separated levels")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime"],
        help="the generator's engine, in-process and in the server (XMC_BACKEND)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="CPU threads for the model, in-process and in the server (XMC_TORCH_THREADS); "
        "default: the service's (on the CPU, cores but one)",
    )
    return parser


def _pick_model(args: argparse.Namespace, scratch: Path) -> tuple[str | None, str]:
    from models.pipeline import BUNDLED_DIR

    if args.model:
        return args.model, args.model
    if args.random_preset is None and (BUNDLED_DIR / "model.safetensors").is_file():
        return None, f"the bundled artifact ({BUNDLED_DIR.name})"
    preset = args.random_preset or "shapes-64"
    return random_artifact(preset, scratch / preset), f"a random-weight {preset} generator"


def _report(
    described: str, device: str, args: argparse.Namespace, model: InProcess, figures: tuple
) -> str:
    batched, naive, peak = figures
    flops, model_default_threads = model.flops_per_image, model.default_threads
    batch, wait = args.max_batch_images, args.max_wait_ms
    threads, cpus = model.threads, os.cpu_count()
    lines = [
        f"model: {described}; device: {device}; backend: {model.pipe.backend}; "
        f"threads: {threads}; cpus: {cpus}; load average at the start: {args.load_at_start}",
        (
            f"in-process = pipe.generate on cached text features at batch {batch}; each level "
            f"alternates {args.rounds} rounds of service and in-process, {args.seconds:g} s in all "
            "for each; figures are medians over the rounds"
        ),
        f"service, batching on (max batch {batch}, max wait {wait:g} ms):",
        "  clients   images/s     p50 ms     p99 ms   images  in-process img/s   ratio",
    ]
    for paired in [*batched, naive]:
        if paired is naive:
            lines.append("service, batching off (max batch 1, the naive peer):")
        lines.append(
            f"  {paired.clients:7d} {paired.images_per_s:10.2f} {paired.percentile(50):10.1f} "
            f"{paired.percentile(99):10.1f} {len(paired.latencies_ms):8d} {paired.limit:17.2f} "
            f"{paired.ratio:7.2f}"
        )
    top, one = batched[-1], batched[0]
    gain = np.median([p.limit / p.plain for p in batched])
    lines.append(
        f"in-process gain ({model.pipe.backend} backend, folded BNs, {threads} thread(s)) over "
        f"the plain PyTorch generator at torch's default {model_default_threads} threads: "
        f"{gain:.2f}x (goal >= 2x)"
    )
    achieved = top.limit * flops
    lines.append(
        f"generator: {flops / 1e9:.3f} GFLOP/image; in-process {achieved / 1e9:.1f} GFLOP/s = "
        f"{achieved / peak:.0%} of the measured fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s"
    )
    lines.append(f"service / in-process at {top.clients} clients: {top.ratio:.2f} (goal >= 0.90)")
    lines.append(
        f"batched / naive at {top.clients} clients: "
        f"{top.images_per_s / naive.images_per_s:.1f}x (goal >= 8x)"
    )
    overhead = one.percentile(50) - one.single_ms
    lines.append(
        f"single-request overhead, p50: {overhead:.1f} ms (service p50 at 1 client "
        f"{one.percentile(50):.1f} ms - in-process one image {one.single_ms:.1f} ms; "
        "goal <= 15 ms; "
        f"includes the {wait:g} ms batch wait)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.load_at_start = os.getloadavg()
    levels = [int(level) for level in args.clients.split(",")]
    from xmc_service.model_host import resolve_device

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir, described = _pick_model(args, Path(scratch))
        print(f"benchmarking {described} on {device} ...", flush=True)
        os.environ["XMC_BACKEND"] = args.backend  # the servers below inherit it
        model = InProcess(
            model_dir, device, args.max_batch_images, args.torch_threads, args.backend
        )
        server = Server(
            model_dir, device, args.max_batch_images, args.max_wait_ms, args.torch_threads
        )
        batched = serve_and_measure(model, server, levels, args.seconds, args.rounds)
        naive_server = Server(model_dir, device, 1, 0.0, args.torch_threads)
        naive = serve_and_measure(model, naive_server, levels[-1:], args.seconds, args.rounds)[0]
        peak = model.gemm_peak()
    print(_report(described, device, args, model, (batched, naive, peak)))
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
