"""uvicorn for the service: its options (the front's guarded connections, httptools and uvloop
when installed), and the line xmc-serve says when the model ends it."""

from __future__ import annotations

import asyncio
from typing import Any

from xmc_service.settings import Settings


def server_options(settings: Settings) -> dict[str, object]:
    """uvicorn options from the settings (also used by the tests' server): httptools and
    uvloop when installed, the front's guarded connections (xmc_service.front)."""
    from xmc_service.front import guarded_protocol

    base: type[asyncio.Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    except ImportError:  # httptools is not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol
    return {
        "http": guarded_protocol(base, settings.idle_timeout_s, settings.max_connections),
        "limit_concurrency": None,  # the guard answers 429; uvicorn's would be a plain 503
        "timeout_keep_alive": settings.idle_timeout_s,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,  # X-Forwarded-* is the client's to forge; see XMC_PUBLIC_URL
    }


def uvicorn_server(app: object, settings: Settings, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        **server_options(settings),  # type: ignore[arg-type]
    )
    return uvicorn.Server(config)


def failure_line(state: Any) -> str:
    """What xmc-serve says when the model ends it: a load failure, or a model process that
    stopped while serving."""
    reason = state.error or "unknown error"
    if state.stopped_while_serving:
        return f"the model process stopped while serving: {reason}"
    return f"the model could not be loaded: {reason}"
