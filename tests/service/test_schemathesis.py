"""Schemathesis over the app's own OpenAPI schema, against real uvicorn: no input gives a 5xx,
and every response matches the schema (bounded: a few dozen cases per operation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.service.conftest import running_server
from xmc_service.app import create_app
from xmc_service.settings import Settings


@pytest.fixture(scope="module")
def api_schema(tiny_pipeline: Any) -> Iterator[Any]:
    app = create_app(Settings(max_wait_ms=1.0), pipeline=tiny_pipeline)
    with running_server(app) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(case: Any) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        timeout=30,
    )
