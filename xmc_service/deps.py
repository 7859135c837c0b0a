"""`Annotated` dependencies shared by the routers."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from xmc_service.batcher import Batcher
from xmc_service.errors import APIError
from xmc_service.settings import Settings
from xmc_service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


async def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    return state.settings


async def get_batcher(state: Annotated[ServiceState, Depends(get_state)]) -> Batcher:
    """The model's batcher, or 503 while the model is still loading (or failed to load)."""
    if state.status != "ready" or state.batcher is None:
        message = (
            "The model is still loading; retry shortly."
            if state.status == "loading"
            else "The model failed to load; see the server log."
        )
        raise APIError(
            503, message, kind="server_error", code="model_not_ready", headers={"Retry-After": "1"}
        )
    return state.batcher


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def require_api_key(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> None:
    """Bearer authentication when API keys are configured; compared in constant time."""
    if not settings.api_keys:
        return
    token = _bearer_token(request)
    if token is None:
        raise APIError(
            401,
            "Missing bearer API key: send 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = token.encode()
    matches = [hmac.compare_digest(given, key.encode()) for key in settings.api_keys]
    if not any(matches):
        raise APIError(
            401,
            "Incorrect API key provided.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


StateDep = Annotated[ServiceState, Depends(get_state)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
