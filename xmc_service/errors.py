"""Every error leaves the service in OpenAI's shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from xmc_service.batcher import QueueFull
from xmc_service.metrics import count_rejection
from xmc_service.model_host import ModelProcessExited, ModelStalled


class APIError(Exception):
    """An error answered to the client; `param` names the request field at fault, if any."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = dict(headers or {})


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    body = error_body(error.message, error.kind, error.param, error.code)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _param_from_location(location: tuple[Any, ...]) -> str | None:
    """("body", "captions", 2) -> "captions[2]"; the leading "body"/"query" is dropped."""
    parts = list(
        location[1:] if location and location[0] in ("body", "query", "path") else location
    )
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _validation_message(error: Mapping[str, Any], param: str | None) -> str:
    if error.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    if error.get("type") == "missing":
        return f"Missing required parameter: '{param}'." if param else "Missing request body."
    message = str(error.get("msg", "Invalid value"))
    message = message.removeprefix("Value error, ")
    return f"Invalid '{param}': {message}." if param else f"{message}."


async def _on_api_error(request: Request, error: APIError) -> JSONResponse:
    count_rejection(request.app, error.code or "invalid_request")
    return error_response(error)


def queue_full(full: QueueFull) -> APIError:
    """The one answer to a full queue: 429 with Retry-After."""
    return APIError(
        429,
        f"The server is busy; retry after {full.retry_after_s} s.",
        kind="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": str(full.retry_after_s)},
    )


def model_unavailable(error: Exception) -> APIError:
    """The model died or stalled while the request waited: 503, retry shortly."""
    if isinstance(error, ModelStalled):
        message = "The model has stopped answering; retry shortly."
    else:
        message = "The model stopped while this request waited for it; retry shortly."
    return APIError(
        503, message, kind="server_error", code="model_not_ready", headers={"Retry-After": "1"}
    )


def validation_error(errors: list[Any]) -> APIError:
    """The first of pydantic's errors (locations under "body") as an OpenAI-shaped 400."""
    first = errors[0] if errors else {}
    location = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        param, code = None, "invalid_json"
    elif location == ("body",):
        param, code = None, "invalid_body"
    else:
        param, code = _param_from_location(location), "invalid_value"
    message = _validation_message(first, param)
    if code == "invalid_body":
        message = "The request body must be a JSON object sent as Content-Type: application/json."
    return APIError(400, message, param=param, code=code)


async def _on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return await _on_api_error(request, validation_error(list(error.errors())))


async def _on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    code = codes.get(error.status_code, "http_error")
    message = str(error.detail) if error.detail else "HTTP error"
    if error.status_code == 404:
        message = f"No route {request.method} {request.url.path}."
    api_error = APIError(error.status_code, message, code=code, headers=error.headers)
    return await _on_api_error(request, api_error)


async def _on_model_exited(request: Request, error: Exception) -> JSONResponse:
    return await _on_api_error(request, model_unavailable(error))


async def _on_queue_full(request: Request, error: QueueFull) -> JSONResponse:
    return await _on_api_error(request, queue_full(error))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(ModelProcessExited, _on_model_exited)
    app.add_exception_handler(ModelStalled, _on_model_exited)
    app.add_exception_handler(QueueFull, _on_queue_full)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
