"""Every bad input gets an OpenAI-shaped 4xx that names the field; none gets a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from xmc_service.settings import MAX_CAPTION_CHARS

IMAGES = "/v1/images/generations"


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * (MAX_CAPTION_CHARS + 1)}, "prompt"),
        ({}, "prompt"),
        ({"prompt": 7}, "prompt"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": "many"}, "n"),
        ({"prompt": "x", "size": "1024x1024"}, "size"),
        ({"prompt": "x", "size": "64"}, "size"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
        ({"prompt": "x", "output_format": "svg"}, "output_format"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "seed": 2**63 - 1, "n": 2}, "seed"),
        ({"prompt": "x", "truncation": 0}, "truncation"),
        ({"prompt": "x", "truncation": 1.5}, "truncation"),
        ({"prompt": "x", "stream": True}, "stream"),
    ],
)
def test_openai_bad_fields_are_400_naming_the_field(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    error = error_of(client.post(IMAGES, json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404_naming_model(client: TestClient) -> None:
    error = error_of(client.post(IMAGES, json={"prompt": "x", "model": "dall-e-3"}), 404)
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    assert "xmc-tiny" in error["message"]
    native = client.post("/v1/generate", json={"captions": ["x"], "model": "nope"})
    assert error_of(native, 404)["param"] == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"captions": []}, "captions"),
        ({"captions": ["ok", ""]}, "captions[1]"),
        ({"captions": ["x" * (MAX_CAPTION_CHARS + 1)]}, "captions[0]"),
        ({"captions": ["x"] * 17}, "captions"),
        ({"captions": ["x"], "n": 11}, "n"),
        ({"captions": ["a", "b"], "n": 2, "seeds": [1, 2, 3]}, "seeds"),
        ({"captions": ["a"], "seeds": [-5]}, "seeds[0]"),
        ({"captions": ["a"], "bogus": 1}, "bogus"),
        ({"prompt": "a"}, "captions"),
    ],
)
def test_native_bad_fields_are_400_naming_the_field(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    assert error_of(client.post("/v1/generate", json=body), 400)["param"] == param


@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b"", b"[1, 2]", b'"a string"', b"\xff\xfe", b"null"]
)
def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post(IMAGES, content=raw, headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["code"] in ("invalid_json", "invalid_body", "invalid_value")


def test_oversized_body_is_413_by_length_and_by_stream(make_client: Any) -> None:
    with make_client(max_body_bytes=2048) as small:
        big = json.dumps({"prompt": "x" * 4096}).encode()
        error = error_of(small.post(IMAGES, content=big), 413)
        assert error["code"] == "request_too_large"

        def chunks():  # no content-length: the limit applies while the body streams in
            yield big[:1500]
            yield big[1500:]

        streamed = small.post(
            IMAGES, content=chunks(), headers={"content-type": "application/json"}
        )
        assert error_of(streamed, 413)["code"] == "request_too_large"
        assert 'reason="request_too_large"' in small.get("/metrics").text


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    assert error_of(client.get("/v1/nothing"), 404)["code"] == "not_found"
    assert error_of(client.get(IMAGES), 405)["code"] == "method_not_allowed"


def test_api_keys_guard_v1_but_not_health_or_metrics(make_client: Any) -> None:
    with make_client(api_keys=["k-one", "k-two"]) as guarded:
        missing = error_of(guarded.post(IMAGES, json={"prompt": "x"}), 401)
        assert missing["code"] == "missing_api_key"
        wrong = guarded.post(IMAGES, json={"prompt": "x"}, headers={"authorization": "Bearer k"})
        assert error_of(wrong, 401)["code"] == "invalid_api_key"
        assert error_of(guarded.get("/v1/models"), 401)["code"] == "missing_api_key"
        ok = guarded.post(IMAGES, json={"prompt": "x"}, headers={"authorization": "Bearer k-two"})
        assert ok.status_code == 200
        for open_path in ("/health/live", "/health/ready", "/metrics", "/"):
            assert guarded.get(open_path).status_code == 200


def test_cors_allow_list(make_client: Any) -> None:
    with make_client(cors_origins=["https://good.example"]) as cors:
        headers = {"origin": "https://good.example", "access-control-request-method": "POST"}
        allowed = cors.options(IMAGES, headers=headers)
        assert allowed.headers["access-control-allow-origin"] == "https://good.example"
        denied = cors.options(IMAGES, headers={**headers, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers
        assert error_of(denied, 400)["code"] == "cors_refused"
        assert "origin" in denied.json()["error"]["message"]
        simple = cors.get("/health/live", headers={"origin": "https://good.example"})
        assert "x-request-id" in simple.headers["access-control-expose-headers"]


def test_not_ready_is_503_with_retry_after(make_client: Any, tiny_artifact: Any) -> None:
    from fastapi.testclient import TestClient as Client

    from tests.service.conftest import wait_status
    from xmc_service.app import create_app
    from xmc_service.settings import Settings

    app = create_app(Settings(model_dir=str(tiny_artifact / "missing")))
    with Client(app) as broken:
        ready = wait_status(broken, "failed")
        assert ready.status_code == 503
        assert "missing" in ready.json()["error"]
        error = error_of(broken.post(IMAGES, json={"prompt": "x"}), 503)
        assert error["code"] == "model_not_ready"
        assert broken.get("/health/live").status_code == 200


def test_a_model_failure_is_an_openai_shaped_500_without_a_trace(make_client: Any) -> None:
    from tests.service.fakes import FakePipeline

    with make_client(FakePipeline(fail=True), warmup=False) as failing:
        response = failing.post(IMAGES, json={"prompt": "x"}, headers={"x-request-id": "r-500"})
        error = error_of(response, 500)
        assert (error["type"], error["code"]) == ("server_error", "internal_error")
        assert "fake model failed" not in error["message"]
        assert response.headers["x-request-id"] == "r-500"
        assert failing.get("/health/live").status_code == 200
