"""GET /: a small page to type a caption and see the images."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["page"])


@cache
def _page() -> str:
    return files("xmc_service").joinpath("static/index.html").read_text(encoding="utf-8")


@router.api_route(
    "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
)
async def page() -> HTMLResponse:
    return HTMLResponse(_page())
