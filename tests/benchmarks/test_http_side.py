"""The HTTP-side benchmark (benchmarks/http_side.py): its CPU counters, its stand-in model, and
one small run end to end against the real service."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import http_side
from benchmarks.standin_server import StandInPipeline


def test_the_process_tree_counts_a_childs_cpu() -> None:
    # the child spins 0.4 s of CPU, then stays alive (idle) so that the tree still holds it
    spin = (
        "import time\nt = time.process_time()\n"
        "while time.process_time() - t < 0.4: pass\ntime.sleep(20)\n"
    )
    parent = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -c '{spin}'; sleep 5"],
    )
    try:
        time.sleep(0.2)
        first = http_side.process_tree_cpu(parent.pid)
        assert parent.pid in first and len(first) == 2  # the shell and its python child
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = http_side.process_tree_cpu(parent.pid)
            if sum(seconds for _, seconds in tree.values()) >= 0.39:
                break
            time.sleep(0.1)
        child_seconds = [s for pid, (_, s) in tree.items() if pid != parent.pid]
        assert child_seconds and child_seconds[0] >= 0.39
    finally:
        parent.kill()
        parent.wait()


def test_the_stand_in_answers_precomputed_uint8_pixels_per_seed() -> None:
    model = StandInPipeline(resolution=16, batch_ms=0)
    feats = model.encode_text(["a", "b", "c"])
    first = model.generate(feats, [1, 2, 3])
    again = model.generate(model.encode_text(["x"]), [2])
    assert first.dtype.is_floating_point is False and tuple(first.shape) == (3, 3, 16, 16)
    assert np.array_equal(first[1].numpy(), again[0].numpy())
    assert first.float().std() > 0


@pytest.mark.slow
def test_one_small_run_measures_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--seconds", "1", "--clients", "4", "--images", "1,2", "--resolutions", "16"]
    assert http_side.main([*argv, "--gpu-rates", "1000", "--gpu-cores", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("this tree")]
    assert len(rows) == 2
    for row in rows:
        images_per_s, cpu_per_image = float(row.split()[8]), float(row.split()[12])
        assert images_per_s > 0 and cpu_per_image > 0


def test_the_load_client_reads_answers_by_content_length_and_sends_the_next_at_once() -> None:
    import asyncio

    from benchmarks.http_side_client import _Client, _Tally, content_length, requests_for

    assert content_length(b"http/1.1 200 ok\r\ncontent-length: 12\r\nx-a: b") == 12
    assert content_length(b"http/1.1 200 ok\r\nx-a: b\r\ncontent-length:7") == 7
    assert content_length(b"http/1.1 204 no content\r\nx-a: b") == 0
    requests = requests_for(3, 2, "json")
    assert len(set(requests)) == len(requests)  # seeds 3_000_009 + 2 i: each request its own
    assert b'"seed": 3000009' in requests[0] and b'"n": 2' in requests[0]

    class Transport:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def is_closing(self) -> bool:
            return False

    async def scenario() -> tuple[_Tally, Transport, bool]:
        tally, transport = _Tally(), Transport()
        tally.on = True
        client = _Client([b"one", b"two"], tally)
        client.connection_made(transport)  # type: ignore[arg-type]
        done = client.run(deadline=time.perf_counter() + 60)
        body = b'{"data": []}'
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        # one answer in three pieces, then a 429 and a 200 in one piece
        client.data_received(answer[:10])
        client.data_received(answer[10:40])
        assert len(transport.written) == 1  # nothing sent before the whole answer is in
        client.data_received(answer[40:])
        refusal = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
        client.data_received(refusal + answer)
        client.deadline = 0.0  # the next answer is the last
        client.data_received(answer)
        return tally, transport, done.done()

    tally, transport, finished = asyncio.run(scenario())
    assert tally.statuses == {200: 3, 429: 1} and len(tally.latencies) == 3
    assert transport.written == [b"two", b"one", b"two", b"one"]  # the cycle, one per answer
    assert finished


@pytest.mark.slow
def test_the_engine_benchmark_measures_the_engine_and_model_processes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import http_side_engine

    argv = ["--seconds", "1", "--rounds", "1", "--images", "2", "--clients", "4"]
    assert http_side_engine.main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [row for row in rows if row[:2] == ["this", "tree"]]
    assert len(rows) == 1
    images, images_per_s, engine_ms, model_ms = int(rows[0][2]), *map(float, rows[0][3:6])
    assert images == 2 and images_per_s > 0 and engine_ms > 0 and model_ms > 0
