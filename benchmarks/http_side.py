"""Benchmark: the service's HTTP side alone, per image, from the server processes' CPU counters.

    python -m benchmarks.http_side [--seconds 4] [--old-tree DIR] [--workers 1,2]

Runs the real service (routes, batcher, model host, encoding) with a stand-in model that
answers precomputed pixels at once (`benchmarks/standin_server.py`; `--batch-ms` makes it sleep
per batch, as a GPU would take), under closed-loop keep-alive clients at 64 and 256
connections, n = 1 and 4 images per request, 32 and 256 px. For each cell it reports the
server's CPU time per request and per image (utime + stime of the server's process tree, from
/proc, before and after; steadier on a shared machine than img/s), img/s, p50/p99 latency and
the load client's own CPU (it runs in a process of its own, so it is seen to not be the limit).

`--old-tree DIR` (a `git archive` of an earlier commit) runs that tree's service beside this
one in the same run, with the same stand-in and the same clients, so the CPU per image of
today and of the old path are compared in one run. `--workers 1,2` runs this tree with 1 and
then 2 HTTP worker processes (XMC_WORKERS).

The HTTP side's ceiling per core is 1 / (HTTP-process CPU seconds per image); the predicted
service rate on a GPU is min(the model's rate, cores x that ceiling), printed for
`--gpu-rates` (img/s of the model alone at each resolution, e.g. 10583 at 32 px measured
in-process on an H200, docs/gpu.md) and `--gpu-cores` HTTP cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process CPU counters


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, utime + stime in seconds) of one process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """{pid: (name, CPU seconds)} of `root` and all its descendants."""
    table: dict[int, tuple[str, int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            tree[pid] = (table[pid][0], table[pid][2])
            frontier += [child for child, (_, ppid, _) in table.items() if ppid == pid]
    return tree


# ---------------------------------------------------------------- the servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandInServer:
    """The service of `tree` with the stand-in model, in a subprocess."""

    def __init__(self, tree: Path, resolution: int, batch_ms: float, env: dict[str, str]) -> None:
        self.port = _free_port()
        site = env.pop("BENCH_EXTRA_PATH", "")
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(tree), site) if p),
            "XMC_STANDIN_RESOLUTION": str(resolution),
            "XMC_STANDIN_BATCH_MS": str(batch_ms),
            "XMC_MAX_QUEUE_IMAGES": "8192",
            "XMC_MAX_CONNECTIONS": "2048",
            "XMC_API_KEYS": "",
            "XMC_WARMUP": "false",
            "OMP_NUM_THREADS": "1",
            **env,
        }
        command = [sys.executable, str(HERE / "standin_server.py"), "--port", str(self.port)]
        self.process = subprocess.Popen(
            command + ["--log-level", "warning"], env=environment, cwd=tree
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}")
            try:
                url = f"http://127.0.0.1:{self.port}/health/ready"
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")

    def cpu(self) -> dict[int, tuple[str, float]]:
        return process_tree_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Cell:
    server: str
    resolution: int
    clients: int
    images_per_request: int
    api: str
    result: dict
    cpu_by_process: dict[str, float] = field(default_factory=dict)

    @property
    def server_cpu_s(self) -> float:
        return sum(self.cpu_by_process.values())

    @property
    def http_cpu_s(self) -> float:
        return sum(s for name, s in self.cpu_by_process.items() if name.startswith("http"))

    def role_cpu_s(self, role: str) -> float:
        """CPU seconds of one role's processes (engine, model, other)."""
        return self.cpu_by_process.get(role, 0.0)

    def per_image_ms(self, seconds: float) -> float:
        return 1000 * seconds / max(1, self.result["images"])


def _roles(before: dict[int, tuple[str, float]], root: int) -> dict[int, str]:
    """A role per process: this tree's names (xmc-http-N, xmc-engine, xmc-model), else the root
    is HTTP and a child the model (old tree), or "other" (resource tracker) beside xmc-model."""
    named_model = any(name == "xmc-model" for name, _ in before.values())
    roles = {}
    for pid, (name, _) in before.items():
        if name.startswith("xmc-"):
            roles[pid] = name.removeprefix("xmc-")
        elif pid == root:
            roles[pid] = "http"
        else:
            roles[pid] = f"other:{pid}" if named_model else f"model:{pid}"
    return roles


def measure_cell(
    server: StandInServer,
    clients: int,
    images: int,
    seconds: float,
    api: str,
    client_tree: Path = TREE,
) -> tuple[dict, dict[str, float]]:
    """One cell: `client_tree`'s load client against the server, each server process's CPU."""
    client = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http_side_client",
         str(server.port), str(clients), str(images), str(seconds), api],
        stdout=subprocess.PIPE, text=True, cwd=client_tree,
        env={**os.environ, "PYTHONPATH": str(client_tree)},
    )  # fmt: skip
    assert client.stdout is not None
    line = client.stdout.readline()
    if line.strip() != "go":
        client.wait()
        raise RuntimeError(f"the load client failed before it started: {line!r}")
    before = server.cpu()
    result = json.loads(client.stdout.readline())
    after = server.cpu()
    client.wait()
    roles = _roles(before, server.process.pid)
    by_role: dict[str, float] = {}
    for pid, (_, seconds_before) in before.items():
        if pid in after:
            role = roles[pid].split(":")[0]
            by_role[role] = by_role.get(role, 0.0) + after[pid][1] - seconds_before
    return result, by_role


def run_server_cells(
    label: str,
    tree: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    client_tree: Path = TREE,
) -> list[Cell]:
    cells = []
    for resolution in args.resolutions:
        server = StandInServer(tree, resolution, args.batch_ms, dict(env))
        try:
            server.wait_ready()
            for clients in args.clients:
                for images in args.images:
                    for api in args.apis:
                        result, cpu = measure_cell(
                            server, clients, images, args.seconds, api, client_tree
                        )
                        cell = Cell(label, resolution, clients, images, api, result, cpu)
                        cells.append(cell)
                        print(_row(cell), flush=True)
        finally:
            server.stop()
    return cells


HEADER = (
    f"{'server':<22}{'px':>4}{'cli':>5}{'n':>3}{'api':>7}{'img/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'srv CPU ms/req':>15}{'ms/img':>8}{'HTTP ms/img':>12}{'client ms/img':>14}"
    f"{'engine':>8}{'model':>7}  non-200"
)


def _row(cell: Cell) -> str:
    result = cell.result
    requests = max(1, result["requests"])
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    if result.get("reconnects"):
        bad["reconnects"] = result["reconnects"]
    return (
        f"{cell.server:<22}{cell.resolution:>4}{cell.clients:>5}{cell.images_per_request:>3}"
        f"{cell.api:>7}{result['images'] / result['seconds']:>9.1f}{result['p50_ms']:>9.1f}"
        f"{result['p99_ms']:>9.1f}{1000 * cell.server_cpu_s / requests:>15.3f}"
        f"{cell.per_image_ms(cell.server_cpu_s):>8.3f}{cell.per_image_ms(cell.http_cpu_s):>12.3f}"
        f"{cell.per_image_ms(result['client_cpu_s']):>14.3f}"
        f"{cell.per_image_ms(cell.role_cpu_s('engine')):>8.3f}"
        f"{cell.per_image_ms(cell.role_cpu_s('model')):>7.3f}  {bad or ''}"
    )


def ceiling_ratio(one: Cell, two: Cell, cores: int) -> float:
    """The most the second cell's workers can serve over the first's, from CPU per image alone:
    every process (workers, engine, model, load client) shares `cores`, so a setting serves at
    most cores / (all its CPU per image), and a lone worker no more than its one core allows."""

    def total(cell: Cell) -> float:
        return (cell.server_cpu_s + cell.result["client_cpu_s"]) / max(1, cell.result["images"])

    one_http = one.http_cpu_s / max(1, one.result["images"])
    return (cores / total(two)) / min(1 / one_http, cores / total(one))


def _gain_line(one: Cell, two: Cell, n: int, px: int) -> str:
    gain = (two.result["images"] / two.result["seconds"]) / (
        one.result["images"] / one.result["seconds"]
    )
    cores = os.cpu_count() or 1
    return (
        f"{two.server.split(', ')[1]} / {one.server.split(', ')[1]} at 64 clients, n={n}, "
        f"{px} px: {gain:.2f}x img/s (goal >= 1.7x); the CPU per image caps it at "
        f"{ceiling_ratio(one, two, cores):.2f}x on {cores} cores"
    )


def _summary(cells: list[Cell], args: argparse.Namespace) -> list[str]:
    lines = []

    def find(server: str, px: int, clients: int, n: int, api: str = "json") -> Cell | None:
        for cell in cells:
            key = (cell.server, cell.resolution, cell.clients, cell.images_per_request, cell.api)
            if key == (server, px, clients, n, api):
                return cell
        return None

    new_one = f"this tree, {args.workers[0]} worker(s)"
    old = find("old tree", 32, 64, 1)
    new = find(new_one, 32, 64, 1)
    if old and new:
        old_ms = old.per_image_ms(old.server_cpu_s)
        new_ms = new.per_image_ms(new.server_cpu_s)
        lines.append(
            f"server CPU per image, 64 clients, n=1, 32 px: old tree {old_ms:.3f} ms, this tree "
            f"{new_ms:.3f} ms: {new_ms / old_ms:.2f} of the old (goal <= 0.33)"
        )
    pairs = []
    if len(args.workers) > 1:
        pairs.append(("this tree", args.workers[0], args.workers[1]))
    if len(args.old_workers) > 1:
        pairs.append(("old tree", args.old_workers[0], args.old_workers[1]))
    for tree, first, second in pairs:
        for px in args.resolutions:
            for n in args.images:
                one = find(f"{tree}, {first} worker(s)", px, 64, n)
                two = find(f"{tree}, {second} worker(s)", px, 64, n)
                if one and two:
                    lines.append(f"{tree}: {_gain_line(one, two, n, px)}")
    rates = dict(zip(args.resolutions, args.gpu_rates, strict=False))
    for px in args.resolutions:
        cell = find(new_one, px, 64, 1)
        if cell is None:
            continue
        ceiling = 1 / (cell.http_cpu_s / max(1, cell.result["images"]))
        line = (
            f"{px} px: HTTP side {cell.per_image_ms(cell.http_cpu_s):.3f} ms CPU per image = "
            f"{ceiling:,.0f} img/s per core"
        )
        if px in rates:
            predicted = min(rates[px], ceiling * args.gpu_cores)
            line += (
                f"; with a model at {rates[px]:,.0f} img/s and {args.gpu_cores} HTTP cores the "
                f"service is predicted at {predicted:,.0f} img/s = {predicted / rates[px]:.2f} "
                "of the model"
            )
        lines.append(line)
    return lines


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http_side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per cell")
    parser.add_argument("--old-tree", type=Path, help="an older tree's service, run beside")
    parser.add_argument("--old-only", action="store_true", help="measure only --old-tree")
    parser.add_argument("--old-extra-path", default="", help="added to the old tree's PYTHONPATH")
    parser.add_argument(
        "--old-workers",
        default="",
        help="the old tree's XMC_WORKERS, comma-separated, each run with the old tree's own "
        "load client (default: the old tree once, at its default, with this tree's client)",
    )
    parser.add_argument("--workers", default="1", help="this tree's XMC_WORKERS, comma-separated")
    parser.add_argument("--clients", default="64,256")
    parser.add_argument("--images", default="1,4", help="images per request")
    parser.add_argument("--resolutions", default="32,256")
    parser.add_argument("--apis", default="json", help="json (OpenAI) and/or binary (native)")
    parser.add_argument("--batch-ms", type=float, default=0.0, help="stand-in sleep per batch")
    parser.add_argument("--gpu-rates", default="10583", help="model img/s per resolution")
    parser.add_argument("--gpu-cores", type=int, default=15, help="HTTP cores on a GPU host")
    parser.add_argument("--extra-path", default="", help="added to this tree's PYTHONPATH")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for this tree")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    args.old_workers = [int(w) for w in args.old_workers.split(",") if w]
    args.clients = [int(c) for c in args.clients.split(",")]
    args.images = [int(n) for n in args.images.split(",")]
    args.resolutions = [int(r) for r in args.resolutions.split(",")]
    args.apis = args.apis.split(",")
    args.gpu_rates = [float(r) for r in args.gpu_rates.split(",") if r]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    print(
        f"stand-in model, {args.batch_ms:g} ms per batch; {args.seconds:g} s per cell; "
        f"{os.cpu_count()} cores; load average {os.getloadavg()}",
        flush=True,
    )
    print(HEADER, flush=True)
    cells: list[Cell] = []
    if args.old_tree is not None:
        old_args = argparse.Namespace(**{**vars(args), "apis": ["json"]})
        old_env = {"BENCH_EXTRA_PATH": args.old_extra_path}
        old = args.old_tree.resolve()
        if not args.old_workers:
            cells += run_server_cells("old tree", old, old_env, old_args)
        for workers in args.old_workers:
            env = {**old_env, "XMC_WORKERS": str(workers)}
            label = f"old tree, {workers} worker(s)"
            cells += run_server_cells(label, old, env, old_args, client_tree=old)
    if not args.old_only:
        extra = dict(item.split("=", 1) for item in args.env)
        for workers in args.workers:
            env = {"XMC_WORKERS": str(workers), "BENCH_EXTRA_PATH": args.extra_path, **extra}
            cells += run_server_cells(f"this tree, {workers} worker(s)", TREE, env, args)
    for line in _summary(cells, args):
        print(line)
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
