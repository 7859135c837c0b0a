"""Benchmark: where the service's model runs, in one run: on a thread of the server
(XMC_MODEL_PROCESS=false) or in a process of its own (the default).

    python -m benchmarks.model_hosts [--model DIR] [--clients 64] [--seconds 8] [--rounds 3]

The servers run side by side (idle while another is measured); each round measures every
one under the same closed-loop clients as `benchmarks.serve_speed`, then the model in-process,
so a shared machine's drifting load weighs on all alike. Prints the medians over the rounds and
each one's ratio to the in-process rate of its round.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from benchmarks.http_load import Server
from benchmarks.serve_speed import InProcess, _measure

HOSTS = {
    "thread of the server": {"XMC_MODEL_PROCESS": "false"},
    "own process (default)": {"XMC_MODEL_PROCESS": "true"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_hosts", description=__doc__)
    parser.add_argument("--model", metavar="DIR", help="artifact (default: the bundled one)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="per host and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch-images", type=int, default=32)
    args = parser.parse_args(argv)

    model = InProcess(args.model, "cpu", args.max_batch_images)
    servers = {
        name: Server(args.model, "cpu", args.max_batch_images, 5.0, None, env)
        for name, env in HOSTS.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in [*HOSTS, "in-process"]}
    try:
        for server in servers.values():
            server.wait_ready()
        for _ in range(args.rounds):
            for name, server in servers.items():
                level = asyncio.run(_measure(server.base, args.clients, args.seconds))
                rates[name].append(level.images_per_s)
            rates["in-process"].append(model.measure(args.seconds)[0])
    finally:
        for server in servers.values():
            server.stop()
    limit = np.array(rates["in-process"])
    print(
        f"{args.clients} clients, {args.rounds} rounds of {args.seconds:g} s, model threads "
        f"{model.threads}; images/s, median over the rounds (in brackets: / in-process)"
    )
    for name, values in rates.items():
        ratio = np.median(np.array(values) / limit)
        print(f"  {name:<32} {np.median(values):8.1f}  ({ratio:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
