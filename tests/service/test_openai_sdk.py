"""The real `openai` SDK against uvicorn on a free port: no client changes but base_url."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.service.conftest import running_server
from xmc_service.app import create_app
from xmc_service.settings import Settings


@pytest.fixture(scope="module")
def server(tiny_pipeline: Any) -> Iterator[str]:
    app = create_app(Settings(api_keys=["sk-test"], max_wait_ms=2.0), pipeline=tiny_pipeline)
    with running_server(app) as base:
        yield base


def test_openai_sdk_generates_b64_and_url_images(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0)
    result = client.images.generate(prompt="a red circle", n=2, size="32x32")
    assert len(result.data) == 2
    for item in result.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert (image.format, image.size) == ("PNG", (32, 32))
        assert item.revised_prompt == "a red circle"
    extended = client.images.generate(
        prompt="a blue square", response_format="url", extra_body={"seed": 5, "truncation": 0.7}
    )
    url = extended.data[0].url
    assert url.startswith("/v1/images/files/")  # no XMC_PUBLIC_URL: a path, never the Host
    assert extended.data[0].model_extra["seed"] == 5
    fetched = httpx.get(server + url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert [model.id for model in client.models.list()] == ["xmc-tiny"]


def test_openai_sdk_raises_its_own_error_types(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="x", size="1024x1024")
    assert bad.value.body["param"] == "size"
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt="x", model="dall-e-3")
    wrong_key = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.images.generate(prompt="x")
