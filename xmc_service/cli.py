"""xmc-serve: serve an artifact over HTTP (flags override XMC_* environment variables)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from xmc_service.server import failure_line, server_options, uvicorn_server
from xmc_service.settings import Settings

__all__ = ["failure_line", "main", "run_server", "server_options", "settings_from_args"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmc-serve",
        description="Serve an XMC-GAN artifact: OpenAI-compatible Images API, native "
        "/v1/generate, a web page at /. Other settings come from XMC_* environment variables "
        "(see docs/service.md).",
    )
    parser.add_argument("--model", metavar="DIR", help="artifact folder (default: the bundled one)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; XMC_HOST)")
    parser.add_argument("--port", type=int, help="port (default 8000; XMC_PORT)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="XMC_DEVICE")
    parser.add_argument(
        "--backend",
        choices=["auto", "torch", "onnxruntime"],
        help="the generator's engine (default auto: ONNX Runtime on the CPU; XMC_BACKEND)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--keep-retrying",
        action="store_true",
        default=None,
        help="when the model cannot be loaded, stay up (ready 503) and retry every "
        "XMC_RETRY_S seconds instead of exiting 1 (XMC_KEEP_RETRYING)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, then the flags that were given."""
    overrides = {
        "model_dir": args.model,
        "host": args.host,
        "port": args.port,
        "device": args.device,
        "backend": args.backend,
        "keep_retrying": args.keep_retrying,
    }
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def check_model_dir(model_dir: str | None) -> str | None:
    """A human sentence for a model folder that cannot be an artifact, else None."""
    if model_dir is None:
        return None
    folder = Path(model_dir)
    if not folder.is_dir():
        return f"model folder {model_dir} (--model / XMC_MODEL_DIR): no such folder"
    if not (folder / "config.json").is_file():
        return (
            f"model folder {model_dir} (--model / XMC_MODEL_DIR): not an artifact folder "
            "(no config.json; see xmc-export)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        print(f"xmc-serve: invalid settings: {problems}", file=sys.stderr)
        return 2
    problem = check_model_dir(settings.model_dir)
    if problem:
        print(f"xmc-serve: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    if settings.workers > 1:
        import tempfile

        with (
            tempfile.TemporaryDirectory(prefix="xmc-metrics-") as metrics_dir,
            tempfile.TemporaryDirectory(prefix="xmc-images-") as images_folder,
        ):
            # every process's metrics in files there, summed by /metrics (multiprocess mode,
            # which prometheus_client picks when imported: the workers import it afresh)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            from prometheus_client import values

            values.ValueClass = values.get_value_class()  # here it may be imported already
            from xmc_service.workers import serve_workers

            failure = serve_workers(settings, args.log_level, images_folder)
    else:
        from xmc_service.app import create_app

        failure = run_server(create_app(settings), settings, args.log_level)
    if failure is not None:
        print(f"xmc-serve: {failure}", file=sys.stderr)
        return 1
    return 0


def run_server(app: object, settings: Settings, log_level: str) -> str | None:
    """uvicorn until a signal, or until the model fails (without keep_retrying); returns
    that failure's one-line description, else None."""
    server = uvicorn_server(app, settings, log_level)
    state = app.state.service  # type: ignore[attr-defined]
    failures: list[str] = []

    def stop() -> None:
        failures.append(failure_line(state))
        server.should_exit = True

    state.on_failure = stop
    server.run()
    return failures[0] if failures else None


if __name__ == "__main__":
    raise SystemExit(main())
