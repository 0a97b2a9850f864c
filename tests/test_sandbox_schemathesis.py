"""Schemathesis against a live sandbox: whatever the spec allows a client to send, it answers right.

The requests are generated from Lucca's OpenAPI document (tests/spec/, as in test_contract.py):
valid ones, invalid ones, and methods the spec does not declare, each sent over loopback to a
``SandboxServer`` and checked by every Schemathesis check (no server error, documented status
and content type, response schema, valid data accepted, invalid data rejected, missing
``Authorization`` refused, 405 with ``Allow`` for undeclared methods).

The spec copy differs from the published document in what the sandbox deliberately does:

- the two documented deviations of test_contract.py: ``trainingDemandId`` / ``sessionId`` may be
  null (CSV imports), and ``multipleOf: 0.01`` is checked on exact decimals
  (:func:`two_decimal_durations`) rather than on binary floats;
- the error answers Lucca's document leaves out are declared, so that their status, content type
  and ``application/problem+json`` body are checked instead of ignored: 400 (invalid query), 401
  (no or wrong API key), 405 (a method other than GET);
- ``page`` is generated as a page index only: its ``string`` branch is a cursor returned in
  ``next``/``prev``, which cannot be generated, and any other string is a 400 (test_sandbox.py).

Anything else Schemathesis finds fails the test. Bounded and repeatable: a fixed seed, deterministic
generation, 40 examples per generation mode (plus the coverage phase's ~150 fixed cases: boundary
values, each parameter missing or malformed, every undeclared method), no shrinking (a failure is
reported as found, with a curl command to replay it), loopback only: about 5 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import settings

from lucca_sandbox import API_PATH, DEFAULT_API_KEY, SandboxConfig, SandboxServer

SPEC = Path(__file__).parent / "spec" / "lucca-training-realized-trainings-v2.openapi.yaml"
API_KEY = DEFAULT_API_KEY
MAX_EXAMPLES = 40

PROBLEM = {
    "description": "An RFC 9457 problem.",
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string", "pattern": "^urn:lucca-sandbox:problem:[a-z-]+$"},
                    "title": {"type": "string", "minLength": 1},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "detail": {"type": "string", "minLength": 1},
                },
            }
        }
    },
}


def sandbox_spec() -> dict[str, Any]:
    """The published spec with the adjustments listed in the module docstring."""
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    components = document["components"]
    properties = components["schemas"]["v2.RealizedTraining"]["properties"]
    for name in ("trainingDemandId", "sessionId"):
        properties[name]["type"] = ["integer", "null"]
    assert properties["durationInHours"].pop("multipleOf") == 0.01
    page = components["parameters"]["page"]["schema"]
    (index,) = [branch for branch in page.pop("oneOf") if branch["type"] == "integer"]
    page.update(index)
    responses = document["paths"][API_PATH]["get"]["responses"]
    for status in ("400", "401", "405"):
        responses[status] = PROBLEM
    return document


@schemathesis.check
def two_decimal_durations(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """``durationInHours`` is a multiple of 0.01, on the decimals the JSON text spells."""
    if response.status_code != 200:
        return
    body = json.loads(response.content, parse_float=Decimal)
    for item in body["items"]:
        duration = Decimal(item["durationInHours"])
        assert duration == duration.quantize(Decimal("0.01")), item


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20250101,
        # No crash cache (.schemathesis/): a run must not depend on what an earlier run found.
        "cache": {"enabled": False},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "no-shrink": True},
        # Valid requests carry the key; the missing_required_header check sends none.
        "parameters": {"Authorization": f"lucca application={API_KEY}"},
    }
)
schema = schemathesis.openapi.from_dict(sandbox_spec(), config=CONFIG)


@pytest.fixture(scope="module")
def live_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(records=500, api_key=API_KEY)) as server:
        yield server


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None)
def test_the_sandbox_answers_what_the_spec_says(
    case: schemathesis.Case, live_sandbox: SandboxServer
) -> None:
    case.call_and_validate(base_url=live_sandbox.url, timeout=10)


@pytest.mark.parametrize(
    "method", ["HEAD", "OPTIONS", "TRACE", "POST", "PUT", "PATCH", "DELETE", "QUERY", "PROPFIND"]
)
def test_every_method_but_get_is_a_405_problem_allowing_get(
    live_sandbox: SandboxServer, method: str
) -> None:
    response = requests.request(
        method,
        live_sandbox.api_url,
        headers={"Authorization": f"lucca application={API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.headers["Content-Type"] == "application/problem+json"
    if method != "HEAD":  # same headers, no body
        assert response.json()["status"] == 405


@pytest.mark.parametrize(
    ("path", "status"),
    [("/elsewhere", 404), ("/_sandbox/health", 401), ("/_sandbox/stats", 401)],
)
@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PROPFIND"])
def test_other_paths_answer_any_method_as_put_or_delete_would(
    live_sandbox: SandboxServer, path: str, status: int, method: str
) -> None:
    """A problem, not a 501 HTML page: an unknown path is a 404, an admin change needs the token."""
    response = requests.request(method, live_sandbox.url + path, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert requests.put(live_sandbox.url + path, timeout=10).status_code == status
