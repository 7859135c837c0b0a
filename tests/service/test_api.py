"""The HTTP API with the tiny real model: OpenAI shape, native generate, models, health, page."""

from __future__ import annotations

import base64
import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def pixels(b64: str) -> np.ndarray:
    return np.asarray(decode(b64).convert("RGB"), dtype=np.int16)


def test_openai_generation_returns_native_size_png_per_image(client: TestClient) -> None:
    response = client.post("/v1/images/generations", json={"prompt": "a red circle", "n": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["created"], int)
    assert len(body["data"]) == 3
    for item in body["data"]:
        image = decode(item["b64_json"])
        assert (image.format, image.size) == ("PNG", (32, 32))
        assert item["revised_prompt"] == "a red circle"
        assert isinstance(item["seed"], int)


def test_same_seed_same_image_and_seeds_count_up(client: TestClient) -> None:
    request = {"prompt": "a blue square", "n": 2, "seed": 41}
    first = client.post("/v1/images/generations", json=request).json()["data"]
    again = client.post("/v1/images/generations", json=request).json()["data"]
    assert [item["seed"] for item in first] == [41, 42]
    assert np.array_equal(pixels(first[0]["b64_json"]), pixels(again[0]["b64_json"]))
    assert not np.array_equal(pixels(first[0]["b64_json"]), pixels(first[1]["b64_json"]))
    alone = client.post("/v1/images/generations", json={"prompt": "a blue square", "seed": 42})
    assert np.array_equal(pixels(alone.json()["data"][0]["b64_json"]), pixels(first[1]["b64_json"]))


def test_output_formats(client: TestClient) -> None:
    for output_format, pil_name in (("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")):
        response = client.post(
            "/v1/images/generations",
            json={"prompt": "a shape", "output_format": output_format, "seed": 1},
        )
        assert response.status_code == 200, response.text
        assert decode(response.json()["data"][0]["b64_json"]).format == pil_name


def test_url_response_serves_the_image_then_forgets_unknown_ids(client: TestClient) -> None:
    response = client.post(
        "/v1/images/generations",
        json={"prompt": "a green triangle", "response_format": "url", "output_format": "webp"},
    )
    item = response.json()["data"][0]
    assert "b64_json" not in item
    assert item["url"].startswith("/v1/images/files/")  # no XMC_PUBLIC_URL: a path
    image = client.get(item["url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(image.content)).size == (32, 32)
    missing = client.get("/v1/images/files/nope.png")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_unknown_openai_fields_are_ignored_and_size_auto_or_native_accepted(
    client: TestClient,
) -> None:
    for size in ("auto", "32x32", None):
        body = {
            "prompt": "x",
            "size": size,
            "quality": "hd",
            "style": "vivid",
            "user": "u1",
            "moderation": "low",
            "background": "auto",
            "model": "xmc-tiny",
        }
        response = client.post("/v1/images/generations", json=body)
        assert response.status_code == 200, response.text


def test_truncation_changes_the_image(client: TestClient) -> None:
    base = {"prompt": "a circle", "seed": 3}
    full = client.post("/v1/images/generations", json=base).json()["data"][0]
    truncated = client.post("/v1/images/generations", json={**base, "truncation": 0.3})
    assert truncated.status_code == 200
    assert not np.array_equal(
        pixels(full["b64_json"]), pixels(truncated.json()["data"][0]["b64_json"])
    )


def test_native_generate_several_captions_seeds_and_attention(client: TestClient) -> None:
    body = {
        "captions": ["a red circle", "a small blue square"],
        "n": 2,
        "seeds": [5, 6, 7, 8],
        "return_attention": True,
    }
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "xmc-tiny"
    assert [image["caption"] for image in answer["images"]] == [
        "a red circle",
        "a red circle",
        "a small blue square",
        "a small blue square",
    ]
    assert [image["seed"] for image in answer["images"]] == [5, 6, 7, 8]
    first = answer["images"][0]
    assert first["tokens"] == ["[CLS]", "a", "red", "circle", "[SEP]"]
    maps = np.array([word["map"] for word in first["attention"]])  # (T, 16, 16)
    assert maps.shape == (5, 16, 16)
    assert np.allclose(maps.sum(axis=0), 1.0, atol=1e-3)  # attention over words sums to 1
    assert [word["token"] for word in first["attention"]] == first["tokens"]
    # the same caption and seed through the OpenAI route gives the same image
    openai_image = client.post(
        "/v1/images/generations", json={"prompt": "a red circle", "seed": 6}
    ).json()["data"][0]
    diff = np.abs(pixels(openai_image["b64_json"]) - pixels(answer["images"][1]["b64_json"]))
    assert diff.max() <= 1


def test_native_generate_without_attention_omits_it(client: TestClient) -> None:
    response = client.post("/v1/generate", json={"captions": ["a shape"], "output_format": "jpeg"})
    image = response.json()["images"][0]
    assert "attention" not in image
    assert decode(image["b64_json"]).format == "JPEG"


def test_models_lists_the_served_model(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [(m["id"], m["resolution"]) for m in body["data"]] == [("xmc-tiny", 32)]


def test_health_and_request_ids(client: TestClient) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert len(live.headers["x-request-id"]) == 32
    assert live.headers["x-request-id"] != ready.headers["x-request-id"]
    echoed = client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    unsafe = client.get("/health/live", headers={"x-request-id": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc"
    error = client.post("/v1/images/generations", json={})
    assert error.status_code == 400 and "x-request-id" in error.headers


def test_metrics_count_images_batches_and_rejections(client: TestClient) -> None:
    client.post("/v1/images/generations", json={"prompt": "metrics", "n": 2})
    client.post("/v1/images/generations", json={"prompt": ""})
    text = client.get("/metrics").text
    for name in (
        "xmc_queue_images",
        "xmc_queue_seconds_bucket",
        "xmc_inference_seconds_bucket",
        "xmc_request_seconds_bucket",
        "xmc_batch_images_bucket",
    ):
        assert name in text
    generated = [
        line for line in text.splitlines() if line.startswith("xmc_images_generated_total")
    ]
    assert float(generated[0].split()[-1]) >= 2
    assert 'xmc_rejections_total{reason="invalid_value"}' in text


def test_page_has_a_caption_box(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="caption"' in page.text and "v1/images/generations" in page.text
