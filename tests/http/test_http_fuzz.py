"""The HTTP service fuzzed from its own OpenAPI document (schemathesis), valid and invalid requests alike,
against a real server process: never a 5xx, every answer as documented, and no event stored from a
request that was refused (a 200 stores at most the calls it counts as accepted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_server import ApiServer, api_server
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from orchestrator.store import Store, open_store

EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def fuzzed_store(fuzzed: ApiServer) -> Iterator[Store]:
    opened = open_store(fuzzed.db)
    try:
        yield opened
    finally:
        opened.dispose()


def stored(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM events")).scalar_one())


def fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, server: ApiServer, store: Store
) -> dict[int, int]:
    """Hypothesis explores one operation; returns how often each status was answered."""
    headers = dict(server.auth) if operation.path.startswith("/v1/") else {}
    answered: dict[int, int] = {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        deadline=None,
        suppress_health_check=list(HealthCheck),
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        before = stored(store)
        response = case.call(base_url=server.url, headers=headers)
        case.validate_response(response, checks=CHECKS)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        after = stored(store)
        if response.status_code != 200 or not operation.path.startswith("/v1/"):
            assert after == before, f"{response.status_code} to {operation.path} stored events"
        else:
            assert after - before <= response.json()["accepted"]

    run()
    return answered


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_api_from_its_own_schema(fuzzed: ApiServer, fuzzed_store: Store, mode: GenerationMode) -> None:
    # The schema's own operations, each explored by Hypothesis through schemathesis's strategies (its
    # pytest loader does not run on this pytest).
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/track", "/v1/batch", "/healthz", "/metrics"}
    answered: dict[int, int] = {}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to make invalid: no parameters, no body
        for status, n in fuzz(operation, mode, fuzzed, fuzzed_store).items():
            answered[status] = answered.get(status, 0) + n
    assert 200 in answered  # something was accepted: the fuzzing reached the store
    if mode is GenerationMode.NEGATIVE:
        assert set(answered) - {200} <= {400, 401, 413, 415, 503} and 400 in answered
