"""The serving benchmark's harness: the real server in a subprocess, and a connection cheap
enough to load it from the same machine."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough to POST JSON: the load
    generator shares this machine's cores with the server, so it must cost little per request
    (an httpx client costs more CPU per request than the service's own HTTP layer)."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        assert self.reader is not None and self.writer is not None
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m xmc_service` in a subprocess with the given batching settings."""

    def __init__(
        self,
        model_dir: str | None,
        device: str,
        batch: int,
        wait_ms: float,
        threads: int | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            **(extra_env or {}),
            "XMC_DEVICE": device,
            "XMC_MAX_BATCH_IMAGES": str(batch),
            "XMC_MAX_WAIT_MS": str(wait_ms),
            "XMC_MAX_QUEUE_IMAGES": "4096",
            "XMC_API_KEYS": "",
        }
        if threads is not None:
            env["XMC_TORCH_THREADS"] = str(threads)
        command = [sys.executable, "-m", "xmc_service", "--port", str(self.port)]
        command += ["--log-level", "warning"] + (["--model", model_dir] if model_dir else [])
        self.process = subprocess.Popen(command, env=env)

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
