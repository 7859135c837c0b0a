"""CORS with refusals in the OpenAI error shape (request ids, body bounds and authentication
are the front's: xmc_service.front)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from xmc_service.errors import error_body


class OpenAICORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the OpenAI error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = f"{bytes(response.body).decode()}."
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("access-")}
        body = error_body(message, "invalid_request_error", None, "cors_refused")
        return JSONResponse(body, status_code=response.status_code, headers=headers)
