"""Benchmark: the engine's and the model process's CPU per image, without HTTP.

    python -m benchmarks.http_side_engine [--old-tree DIR] [--workers 2] [--images 1,4]

The engine (`xmc_service.engine.Engine` and its batcher), the model process with the stand-in
model (`benchmarks/standin_server.py`) and W worker processes that each hold the real
`RemoteBatcher` and keep C requests of n images outstanding through it, for a set time: the
HTTP workers' path to the engine with no HTTP, no encoding and no load client. Each process's
CPU comes from /proc as in `benchmarks.http_side`; the load is the same in every run, so the
engine's cost per image is compared without the HTTP side's noise on a shared machine.
`--old-tree DIR` (a `git archive` of an earlier commit) runs that tree's engine in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TREE = HERE.parent


def _patch_standin() -> None:
    """The stand-in model for the model process (`benchmarks/standin_server.py`, run by path as
    the HTTP-side benchmark runs it, so an old tree gets the same stand-in)."""
    import importlib

    sys.path.insert(0, str(HERE))
    importlib.import_module("standin_server")._patch()


def _settings() -> Any:
    """The service's settings from the environment (XMC_*), as xmc-serve reads them."""
    from xmc_service.settings import Settings

    return Settings()  # type: ignore[call-arg]  # every field has a default


def _worker(conn: Any, index: int, clients: int, images: int, seconds: float, start: Any) -> None:
    """One stand-in HTTP worker: `clients` tasks calling RemoteBatcher.generate back to back."""
    from xmc_service.engine import RemoteBatcher
    from xmc_service.imaging import ImageStore
    from xmc_service.metrics import make_metrics
    from xmc_service.model_host import set_process_name
    from xmc_service.state import ServiceState

    set_process_name(f"xmc-http-{index}")

    async def run() -> int:
        state = ServiceState(_settings(), make_metrics(), ImageStore(1.0, 1))
        remote = RemoteBatcher(state, conn)
        await remote.start()
        while state.status != "ready":
            await asyncio.sleep(0.05)
        served = 0

        async def client(number: int, deadline: float) -> None:
            nonlocal served
            seed = (index * clients + number) * 1_000_003
            while time.perf_counter() < deadline:
                caption = f"a red circle number {seed % 8}"
                got = await remote.generate([caption] * images, list(range(seed, seed + images)))
                served += len(got)
                seed += images

        await asyncio.gather(*(client(i, 0.0) for i in range(clients)))  # one call each
        await asyncio.to_thread(start.wait)
        served = 0
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(i, deadline) for i in range(clients)))
        return served

    served = asyncio.run(run())
    conn.send([("count", 0, served)])  # read by the engine's stand-in below, never a call
    time.sleep(0.5)


def _start_workers(
    workers: int, clients: int, images: int, seconds: float
) -> tuple[list[Any], list[Any], Any]:
    """The worker processes, their pipes (engine end, worker end) and the barrier that starts
    the measured window in all of them and the engine at once."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers + 1)
    pipes = [context.Pipe() for _ in range(workers)]
    processes = [
        context.Process(
            target=_worker, args=(child, i, clients, images, seconds, start), daemon=True
        )
        for i, (_, child) in enumerate(pipes)
    ]
    for process in processes:
        process.start()
    return pipes, processes, start


def serve(workers: int, clients: int, images: int, seconds: float) -> None:
    """The engine process: the tree's Engine and lifecycle, as `xmc_service.workers` runs them."""
    _patch_standin()
    from xmc_service import lifecycle
    from xmc_service.engine import Engine
    from xmc_service.imaging import ImageStore
    from xmc_service.metrics import make_metrics
    from xmc_service.model_host import set_process_name
    from xmc_service.state import ServiceState

    set_process_name("xmc-engine")
    pipes, processes, start = _start_workers(workers, clients, images, seconds)
    counts: list[int] = []

    async def run() -> None:
        state = ServiceState(_settings(), make_metrics(), ImageStore(1.0, 1))
        engine = Engine(state, [end for end, _ in pipes])
        started = engine._start_call

        def start_call(index: int, message: tuple[Any, ...]) -> None:
            if message[0] == "count":
                counts.append(message[2])
            else:
                started(index, message)

        engine._start_call = start_call  # type: ignore[method-assign]
        engine.start()
        tasks = [
            asyncio.create_task(lifecycle.load_and_warm(state, None)),
            asyncio.create_task(engine.broadcast_status()),
        ]
        await asyncio.to_thread(start.wait)
        print("go", flush=True)
        while len(counts) < workers:
            await asyncio.sleep(0.05)
        print(json.dumps({"images": sum(counts)}), flush=True)
        engine.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if state.batcher is not None:
            await state.batcher.stop()

    profile_to = os.environ.get("BENCH_ENGINE_PROFILE")  # --profile: the engine's main thread
    if profile_to:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: waits cost nothing
        profiler.runcall(asyncio.run, run())
        profiler.dump_stats(profile_to)
    else:
        asyncio.run(run())
    for process in processes:
        process.join(timeout=10)


def measure(
    tree: Path, workers: int, clients: int, images: int, seconds: float, profile: str = ""
) -> dict:
    """One run of `tree`'s engine; CPU seconds per role over the measured window."""
    from benchmarks.http_side import _roles, process_tree_cpu

    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "XMC_STANDIN_RESOLUTION": "32",
        "XMC_STANDIN_BATCH_MS": "0",
        "XMC_MAX_QUEUE_IMAGES": "8192",
        "XMC_WARMUP": "false",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, str(HERE / "http_side_engine.py"), "serve"]
    command += [str(workers), str(clients), str(images), str(seconds)]
    if profile:
        env["BENCH_ENGINE_PROFILE"] = profile
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "go":
        process.wait()
        raise RuntimeError("the engine run failed before it started")
    before = process_tree_cpu(process.pid)
    result = json.loads(process.stdout.readline())
    after = process_tree_cpu(process.pid)
    process.wait(timeout=60)
    roles = _roles(before, process.pid)
    cpu: dict[str, float] = {}
    for pid, (_, seconds_before) in before.items():
        if pid in after:
            role = roles[pid].split(":")[0]
            role = "http" if role.startswith("http") else role
            cpu[role] = cpu.get(role, 0.0) + after[pid][1] - seconds_before
    return {"images": result["images"], "seconds": seconds, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_side_engine")
    parser.add_argument("--old-tree", type=Path, help="an older tree's engine, run beside")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32, help="outstanding calls per worker")
    parser.add_argument("--images", default="1,4", help="images per call")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2, help="old and this tree, alternating")
    parser.add_argument("--profile", default="", help="cProfile file of this tree's engine")
    args = parser.parse_args(argv)
    trees = [("this tree", TREE)]
    if args.old_tree is not None:
        trees.insert(0, ("old tree", args.old_tree.resolve()))
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()}", flush=True)
    print(f"{'engine':<10}{'n':>3}{'img/s':>9}{'engine ms/img':>15}{'model':>8}{'workers':>9}")
    for _ in range(args.rounds):
        for images in [int(n) for n in args.images.split(",")]:
            for label, tree in trees:
                profile = args.profile if tree == TREE else ""
                run = measure(tree, args.workers, args.clients, images, args.seconds, profile)
                per_image = {k: 1000 * v / max(1, run["images"]) for k, v in run["cpu"].items()}
                print(
                    f"{label:<10}{images:>3}{run['images'] / run['seconds']:>9.0f}"
                    f"{per_image.get('engine', 0):>15.4f}{per_image.get('model', 0):>8.4f}"
                    f"{per_image.get('http', 0):>9.4f}",
                    flush=True,
                )
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__mp_main__":  # a process the engine run spawned: the model's needs the stand-in
    _patch_standin()

if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    workers, clients, images = (int(a) for a in sys.argv[2:5])
    serve(workers, clients, images, float(sys.argv[5]))
elif __name__ == "__main__":
    raise SystemExit(main())
