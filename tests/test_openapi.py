"""/api/openapi.json describes POST /e and the read API, and a real server keeps to it:
schemathesis generates requests from the document (valid and invalid ones) and checks every
answer: never a 5xx other than the documented 503, the documented status codes, content
types, headers and bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from pixel_server.openapi import document

from conftest import API_TOKEN, ServerProcess, start_server


@schemathesis.serializer("application/x-ndjson")
def ndjson(_context: schemathesis.SerializationContext, value: Any) -> bytes:
    """Events as NDJSON: one object a line (a single event is one line)."""
    events = value if isinstance(value, list) else [value]
    return "".join(json.dumps(event) + "\n" for event in events).encode()


@schemathesis.serializer("text/plain")
def beacon(_context: schemathesis.SerializationContext, value: Any) -> bytes:
    """What navigator.sendBeacon sends: the JSON text, as text/plain."""
    return json.dumps(value).encode()


SCHEMA = schemathesis.openapi.from_dict(document())


@SCHEMA.auth().apply_to(path_regex="^/api/")
class ReadToken:
    """The read API's token, given through schemathesis's auth hook rather than by overwriting
    the case's headers: a negative case (no Authorization, an extra parameter) is then sent as
    generated, and its checks judge what was really sent. POST /e is called without a key (a
    browser call); the read token is no ingest key."""

    def get(self, case: schemathesis.Case[Any], context: Any) -> str:
        return API_TOKEN

    def set(self, case: schemathesis.Case[Any], data: str, context: Any) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for every operation (SQLite): the checks are about HTTP."""
    process = start_server(Path(tmp_path_factory.mktemp("openapi")))
    yield process
    process.kill_all()


def test_the_document_is_served_as_built(server: ServerProcess) -> None:
    """GET /api/openapi.json, no token needed: the document this module tests with."""
    response = httpx.get(f"{server.url}/api/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document()


@SCHEMA.parametrize()
@settings(
    max_examples=60,
    deadline=None,  # a busy machine: no per-example time limit
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_server_keeps_to_its_document(
    case: schemathesis.Case[Any], server: ServerProcess
) -> None:
    """Every generated request gets a documented answer."""
    # POST /e answers a body of events 200 with a rejection per event that breaks a rule
    # (docs/events.md), so that the good events around a bad one are kept: a schema-violating
    # event accepted into the answer is the contract, not a failure. Its other checks stand.
    excluded: list[Any] = [negative_data_rejection] if case.path == "/e" else []
    # a revocation's link must be one this server signed, and its texts printable: no schema
    # can say either, so a schema-valid body may well be refused (400 bad_link, bad_cid)
    if case.path == "/api/revocations":
        excluded.append(positive_data_acceptance)
    # a report's zone must be one the machine knows, its metrics and group the ones the event
    # registry makes, its filters values a dimension can hold: a schema-valid string may be
    # refused (400, naming the parameter); its 5xx and schema checks stand
    if case.path.startswith(("/api/stats", "/api/audit")):
        excluded.append(positive_data_acceptance)
    # a uid must be printable (str.isprintable: no control, format or unassigned character),
    # which no JSON Schema pattern says exactly; the admin log's since and until are free text
    if case.path.startswith(("/api/subjects", "/api/admin-log")):
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=server.url, excluded_checks=excluded)
