"""The front: what every HTTP request meets first, before FastAPI.

In order: a request id; HEAD answered as GET without the body; a trailing slash redirected to
the path without it (a relative Location, never from the Host header); the bearer key checked
before any body is read; the body bounded (413) and given idle_timeout_s to arrive (408).
Then the two generation routes run on a fast path: the body validated straight from its JSON
bytes by pydantic and the answer's bytes sent as they are, with no routing, dependency solving
or response validation (the work per request the HTTP side pays, benchmarks/http_side.py);
everything else goes to FastAPI. With CORS origins set, every route goes through FastAPI (its
CORS middleware). Unexpected errors become an OpenAI-shaped 500 without a stack trace.

`guarded_protocol` is the connection side: uvicorn's HTTP protocol with a deadline on idle and
slowly sent requests, and a bound on open connections answered 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from xmc_service.batcher import QueueFull
from xmc_service.errors import (
    APIError,
    error_body,
    model_unavailable,
    queue_full,
    validation_error,
)
from xmc_service.model_host import ModelProcessExited, ModelStalled
from xmc_service.routes.generate import generate_answer, wants_binary
from xmc_service.routes.images import images_answer
from xmc_service.schemas import GenerateRequest, ImageGenerationRequest
from xmc_service.state import ServiceState

logger = logging.getLogger("xmc_service")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")
# Open without a key: the probes, the metrics, the page, the docs, and the image files (their
# unguessable ids are the credential, so an <img> tag can load them).
_OPEN_PREFIXES = ("/health/", "/metrics", "/docs", "/openapi.json", "/v1/images/files/")


class BodyTimeout(Exception):
    pass


class Front:
    """The ASGI callable in front of `fastapi_app` (see the module's docstring)."""

    def __init__(self, fastapi_app: Any, state: ServiceState) -> None:
        self.app: ASGIApp = fastapi_app.full_stack
        self.state = state
        settings = state.settings
        self.keys = [key.encode() for key in settings.api_keys]
        self.max_body = settings.max_body_bytes
        self.body_timeout_s = settings.idle_timeout_s
        self.fast = not settings.cors_origins
        # x-xmc-worker on generation answers: which HTTP worker of several served it
        self.worker_header: list[tuple[bytes, bytes]] = []
        self._fastapi = fastapi_app
        self._paths: set[str] | None = None

    @property
    def paths(self) -> set[str]:
        """The routes' paths without parameters (from the OpenAPI schema, made once)."""
        if self._paths is None:
            self._paths = {p for p in self._fastapi.openapi()["paths"] if "{" not in p}
        return self._paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else os.urandom(16).hex().encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        started = False
        head = scope["method"] == "HEAD"

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message = {**message, "headers": [*kept, (b"x-request-id", request_id)]}
            elif head and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            if head:
                scope = {**scope, "method": "GET"}
            await self._route(scope, headers, receive, send_with_id)
        except Exception as error:
            if started:
                raise
            if isinstance(error, APIError):
                count_rejection_state(self.state, error.code or "invalid_request")
                await send_json(send_with_id, error.status, _api_body(error), error.headers)
                return
            logger.exception("unexpected error, request id %s", request_id.decode())
            body = error_body("Internal server error.", "server_error", None, "internal_error")
            await send_json(send_with_id, 500, body)

    async def _route(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        path: str = scope["path"]
        if path != "/" and path.endswith("/") and path.rstrip("/") in self.paths:
            query = scope.get("query_string", b"")
            location = path.rstrip("/").encode() + (b"?" + query if query else b"")
            redirect = [(b"location", location), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 307, "headers": redirect})
            await send({"type": "http.response.body", "body": b""})
            return
        if self.keys and path.startswith("/v1/") and not path.startswith(_OPEN_PREFIXES):
            self._check_key(headers.get(b"authorization", b""))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            raise _too_large(self.max_body)
        method = scope["method"]
        if self.fast and method == "POST" and path in FAST_ROUTES:
            body = await self._read_body(receive)
            content, extra, media_type = await FAST_ROUTES[path](body, headers, receive, self.state)
            response_headers = [(b"content-type", media_type.encode()),
                                (b"content-length", str(len(content)).encode())]  # fmt: skip
            response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
            response_headers += self.worker_header
            await send({"type": "http.response.start", "status": 200, "headers": response_headers})
            await send({"type": "http.response.body", "body": content})
            return
        await self.app(scope, self._bounded(receive), send)

    def _check_key(self, header: bytes) -> None:
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise APIError(
                401,
                "Missing bearer API key: send 'Authorization: Bearer <key>'.",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        matches = [hmac.compare_digest(token, key) for key in self.keys]  # each, in constant time
        if not any(matches):
            raise APIError(
                401,
                "Incorrect API key provided.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def _receive_in_time(self, receive: Receive) -> dict[str, Any]:
        """The next ASGI message of the request, or 408 when the body stalls."""
        try:
            return dict(await asyncio.wait_for(receive(), self.body_timeout_s))
        except asyncio.TimeoutError:
            raise APIError(
                408, "The request body did not arrive in time.", code="timeout"
            ) from None

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await self._receive_in_time(receive)
            if message["type"] == "http.disconnect":
                raise APIError(499, "The client closed the request.", code="client_disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _too_large(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _bounded(self, receive: Receive) -> Receive:
        """`receive` for FastAPI's routes: the same bound and deadline on the body."""
        size = 0

        async def bounded() -> dict[str, Any]:
            nonlocal size
            message = await self._receive_in_time(receive)
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body:
                    raise _too_large(self.max_body)
            return message

        return bounded


def _too_large(max_bytes: int) -> APIError:
    return APIError(
        413, f"The request body is larger than {max_bytes} bytes.", code="request_too_large"
    )


def _api_body(error: APIError) -> dict[str, Any]:
    return error_body(error.message, error.kind, error.param, error.code)


def count_rejection_state(state: ServiceState, reason: str) -> None:
    state.metrics.rejections.labels(reason=reason).inc()


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    content = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


FastRoute = Callable[
    [bytes, dict[bytes, bytes], Receive, ServiceState], Awaitable[tuple[bytes, dict[str, str], str]]
]


async def _images(
    body: bytes, headers: dict[bytes, bytes], receive: Receive, state: ServiceState
) -> tuple[bytes, dict[str, str], str]:
    request = _validated(ImageGenerationRequest, body)
    return await _answering(images_answer(request, receive, state)), {}, "application/json"


async def _generate(
    body: bytes, headers: dict[bytes, bytes], receive: Receive, state: ServiceState
) -> tuple[bytes, dict[str, str], str]:
    request = _validated(GenerateRequest, body)
    binary = wants_binary(headers.get(b"accept", b"").decode("latin-1"))
    return await _answering(generate_answer(request, receive, state, binary))


async def _answering(work: Awaitable[Any]) -> Any:
    """The model's failures as the API's answers: a full queue 429, a dead or stalled model
    503 (FastAPI's exception handlers do the same on its routes)."""
    try:
        return await work
    except QueueFull as full:
        raise queue_full(full) from None
    except (ModelProcessExited, ModelStalled) as error:
        raise model_unavailable(error) from None


def _validated(model: Any, body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
        raise validation_error(errors) from None


FAST_ROUTES: dict[str, FastRoute] = {
    "/v1/images/generations": _images,
    "/v1/generate": _generate,
}


def guarded_protocol(base: type, idle_timeout_s: float, max_connections: int) -> type:
    """uvicorn's HTTP protocol class `base` with two guards: a connection is closed when it has
    not started a new request (whole head received) within idle_timeout_s of opening or of its
    last request (idle, or a head sent slowly: it was 'never' before), and a connection beyond
    max_connections open is answered 429 with Retry-After and closed, so idle sockets cannot
    shut the service out."""
    refusal_body = json.dumps(
        error_body(
            "Too many open connections; retry shortly.",
            "rate_limit_error",
            None,
            "too_many_connections",
        )
    ).encode()
    refusal = (
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(refusal_body)).encode() + b"\r\n\r\n"
    ) + refusal_body

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _refusing = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                # answer, stop writing, and read (and drop) what the client sends for a moment
                # before closing: closing with its request unread would reset the connection,
                # and the client might never see the 429
                self._refusing = True
                transport.write(refusal)
                if transport.can_write_eof():
                    transport.write_eof()
                self.loop.call_later(1.0, transport.close)
                return
            self._arm(None)

        def data_received(self, data: bytes) -> None:
            if not self._refusing:
                super().data_received(data)

        def _arm(self, cycle: Any) -> None:
            self._idle_handle = self.loop.call_later(idle_timeout_s, self._idle_check, cycle)

        def _idle_check(self, armed_cycle: Any) -> None:
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is armed_cycle and (cycle is None or cycle.response_complete):
                self.transport.close()  # no new request since: idle or sending slowly
                return
            self._arm(cycle)

        def connection_lost(self, exc: Exception | None) -> None:
            handle = getattr(self, "_idle_handle", None)
            if handle is not None:
                handle.cancel()
            super().connection_lost(exc)

    return GuardedProtocol
