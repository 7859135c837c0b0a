"""Schemathesis over the app's own OpenAPI schema, against real uvicorn: no input gives a 5xx,
and every response matches the schema (bounded: a few dozen cases per operation).

Cases are drawn with Hypothesis from each operation's strategy, not through schemathesis' pytest
plugin, whose hooks read pytest internals that change between pytest releases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.service.conftest import running_server
from xmc_service.app import create_app
from xmc_service.settings import Settings

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def api_schema(tiny_pipeline: Any) -> Iterator[Any]:
    app = create_app(Settings(max_wait_ms=1.0), pipeline=tiny_pipeline)
    with running_server(app) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


def test_no_input_makes_a_server_error(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, timeout=30)

        check()
