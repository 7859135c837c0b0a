"""GET /v1/models: the one model this server serves, in OpenAI's list shape."""

from __future__ import annotations

from fastapi import APIRouter

from xmc_service.deps import BatcherDep, StateDep
from xmc_service.schemas import ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=ModelList)
async def list_models(batcher: BatcherDep, state: StateDep) -> ModelList:
    model = batcher.model
    card = ModelCard(id=model.model_id, created=state.created, resolution=model.resolution)
    return ModelList(data=[card])
