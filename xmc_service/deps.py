"""`Annotated` dependencies shared by the routers. Authentication is the front's
(xmc_service.front), before any body is read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from xmc_service.batcher import Batcher
from xmc_service.routes._generation import ready_batcher
from xmc_service.settings import Settings
from xmc_service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


async def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    return state.settings


async def get_batcher(state: Annotated[ServiceState, Depends(get_state)]) -> Batcher:
    """The model's batcher, or 503 while the model is loading, stalled or failed."""
    return ready_batcher(state)


StateDep = Annotated[ServiceState, Depends(get_state)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
