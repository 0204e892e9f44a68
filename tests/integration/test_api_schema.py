"""The OpenAPI document: the checked-in copy (api/openapi.json) is what the app serves, and the API fuzzed
from it with schemathesis answers no request with a server error, with documented status codes and
content types, and bodies that match their schemas. Bounded: a few examples per operation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accord.api.http.app import openapi_document

from tests.integration.api_helpers import World, build_world, make_env

CHECKED_IN = Path(__file__).resolve().parents[2] / "api" / "openapi.json"


def test_checked_in_openapi_document_is_the_served_one() -> None:
    served = json.loads(json.dumps(openapi_document()))
    checked_in = json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    assert checked_in == served, "api/openapi.json is stale: regenerate it with `accord openapi -o api/openapi.json`"
    assert {"/api/v1/datasets", "/api/v1/runs/{run_id}/events", "/readyz"} <= set(served["paths"])
    assert served["components"]["schemas"]["Problem"]["properties"]["errors"]


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from accord.models.migrate import init_db

    engine = init_db(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'accord.db'}")
    env_iter = make_env(engine, sse_max_s=0.5, sse_interval_s=0.1)
    env = next(env_iter)
    try:
        yield build_world(env)
    finally:
        for _ in env_iter:
            pass
        engine.dispose()


def test_fuzzed_requests_get_no_server_error(fuzz_world: World) -> None:
    """Every operation, a few generated requests each (positive and negative data), with A's key."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_world.env.client.app)
    headers = fuzz_world.env.a.headers
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=checks)

        try:
            exercise()
        except Exception as err:  # keep going: report every failing operation at once
            failures.append(f"{operation.label}: {type(err).__name__}: {str(err)[:1500]}")
    assert operations >= 25
    assert not failures, "\n\n".join(failures)
