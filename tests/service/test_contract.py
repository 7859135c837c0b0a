"""The strict contract (issue 13): no coercion, no Host header in URLs, documented content
types, HEAD, the exact determinism claim, and interpolation through the API."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

IMAGES = "/v1/images/generations"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (IMAGES, {"prompt": "x", "n": True}, "n"),
        (IMAGES, {"prompt": "x", "n": "2"}, "n"),
        (IMAGES, {"prompt": "x", "n": 2.0}, "n"),
        (IMAGES, {"prompt": "x", "seed": "5"}, "seed"),
        (IMAGES, {"prompt": "x", "seed": False}, "seed"),
        (IMAGES, {"prompt": "x", "truncation": True}, "truncation"),
        (IMAGES, {"prompt": "x", "truncation": "0.5"}, "truncation"),
        (IMAGES, {"prompt": "x", "stream": "false"}, "stream"),
        ("/v1/generate", {"captions": ["x"], "seeds": [False]}, "seeds[0]"),
        ("/v1/generate", {"captions": ["x"], "n": "2"}, "n"),
        ("/v1/generate", {"captions": ["x"], "return_attention": "true"}, "return_attention"),
        ("/v1/interpolations", {"captions": ["x"], "frames": "4"}, "frames"),
        ("/v1/interpolations", {"captions": ["x"], "seeds": [True]}, "seeds[0]"),
    ],
)
def test_no_coercion_into_numbers_or_booleans(
    client: TestClient, path: str, body: dict[str, Any], param: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_plain_numbers_are_still_numbers(client: TestClient) -> None:
    body = {"prompt": "x", "n": 2, "seed": 5, "truncation": 1, "stream": False}
    assert client.post(IMAGES, json=body).status_code == 200


def test_url_responses_never_copy_the_host_header(make_client: Any) -> None:
    body = {"prompt": "a ring", "response_format": "url"}
    evil = {"host": "evil.example", "x-forwarded-host": "evil.example"}
    with make_client() as plain:
        url = plain.post(IMAGES, json=body, headers=evil).json()["data"][0]["url"]
        assert url.startswith("/v1/images/files/") and "evil" not in url
    with make_client(public_url="https://images.example.com/") as public:
        url = public.post(IMAGES, json=body, headers=evil).json()["data"][0]["url"]
        assert url.startswith("https://images.example.com/v1/images/files/")
        assert public.get(url.removeprefix("https://images.example.com")).status_code == 200


def test_public_url_must_be_an_http_base() -> None:
    from pydantic import ValidationError

    from xmc_service.settings import Settings

    for bad in ("images.example.com", "ftp://x", "https://x/?a=1"):
        with pytest.raises(ValidationError, match="public_url"):
            Settings(public_url=bad)


def test_openapi_documents_every_content_type(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    files = paths["/v1/images/files/{image_id}"]["get"]["responses"]["200"]["content"]
    assert set(files) == {"image/png", "image/jpeg", "image/webp"}
    walks = paths["/v1/interpolations"]["post"]["responses"]["200"]["content"]
    assert set(walks) == {"image/webp", "image/gif"}


def test_head_answers_like_get_without_a_body(client: TestClient) -> None:
    for path in ("/", "/health/live", "/health/ready"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == get.status_code == 200, path
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.content == b""


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), np.int16)


def test_same_seed_within_one_8_bit_level_whatever_the_batch(client: TestClient) -> None:
    """The documented guarantee: same caption and seed -> every pixel within one level of 255,
    alone or batched with any others (float kernels differ by batch size, ~1e-6)."""
    alone = decode(
        client.post(IMAGES, json={"prompt": "a red circle", "seed": 7}).json()["data"][0][
            "b64_json"
        ]
    )
    crowd = client.post(
        "/v1/generate",
        json={
            "captions": ["a blue star", "a red circle", "a big square"],
            "n": 3,
            "seeds": [1, 2, 3, 9, 7, 8, 4, 5, 6],
        },
    ).json()["images"]
    assert crowd[4]["seed"] == 7
    assert np.abs(decode(crowd[4]["b64_json"]) - alone).max() <= 1


@pytest.mark.parametrize("output_format", ["webp", "gif"])
def test_interpolation_returns_an_animation_from_a_to_b(
    client: TestClient, output_format: str
) -> None:
    body = {
        "captions": ["a red circle", "a blue square"],
        "seeds": [3, 9],
        "frames": 5,
        "frame_ms": 80,
        "output_format": output_format,
    }
    response = client.post("/v1/interpolations", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"image/{output_format}"
    assert response.headers["x-seeds"] == "3,9"
    animation = Image.open(io.BytesIO(response.content))
    assert (animation.format, animation.n_frames, animation.size) == (
        output_format.upper(),
        5,
        (32, 32),
    )
    if output_format == "webp":  # lossless: the end frames are the endpoints' own images
        first = client.post(IMAGES, json={"prompt": "a red circle", "seed": 3}).json()
        animation.seek(0)
        start = np.asarray(animation.convert("RGB"), np.int16)
        assert np.abs(start - decode(first["data"][0]["b64_json"])).max() <= 1
        animation.seek(4)
        last = client.post(IMAGES, json={"prompt": "a blue square", "seed": 9}).json()
        end = np.asarray(animation.convert("RGB"), np.int16)
        assert np.abs(end - decode(last["data"][0]["b64_json"])).max() <= 1


def test_interpolation_of_one_caption_walks_the_seed(client: TestClient) -> None:
    response = client.post("/v1/interpolations", json={"captions": ["a star"], "frames": 3})
    assert response.status_code == 200
    seeds = response.headers["x-seeds"].split(",")
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # two random seeds
    assert Image.open(io.BytesIO(response.content)).n_frames == 3
    same = client.post("/v1/interpolations", json={"captions": ["a star"], "seeds": [4]})
    assert same.status_code == 400 and same.json()["error"]["param"] == "seeds"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"captions": []}, "captions"),
        ({"captions": ["a", "b", "c"]}, "captions"),
        ({"captions": ["a"], "frames": 1}, "frames"),
        ({"captions": ["a"], "frames": 49}, "frames"),
        ({"captions": ["a"], "output_format": "png"}, "output_format"),
        ({"captions": ["a"], "seeds": [1, 2, 3]}, "seeds"),
    ],
)
def test_bad_interpolations_are_400(client: TestClient, body: dict, param: str) -> None:
    response = client.post("/v1/interpolations", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_interpolation_respects_the_queue_room(make_client: Any) -> None:
    with make_client(max_queue_images=4) as small:
        response = small.post("/v1/interpolations", json={"captions": ["a"], "frames": 8})
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
