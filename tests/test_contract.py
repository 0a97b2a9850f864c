"""Contract tests: what the client sends and what the sandbox answers both match Lucca's spec.

The spec is a copy of Lucca's published OpenAPI document (tests/spec/), validated with
openapi-core over real HTTP exchanges, so neither side can drift from the contract unnoticed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from airflow_provider_lucca.client import REALIZED_TRAININGS_PATH, ClientConfig, LuccaClient
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY

SPEC = Path(__file__).parent / "spec" / "lucca-training-realized-trainings-v2.openapi.yaml"


def spec_for(base_url: str) -> OpenAPI:
    """The published spec, served from ``base_url``, with two documented adjustments.

    - ``trainingDemandId`` / ``sessionId`` may be null: Lucca's docs say CSV imports have them
      missing or null, which the spec's plain ``integer`` does not allow.
    - ``multipleOf: 0.01`` is checked with exact decimals in :func:`assert_two_decimals`:
      jsonschema divides binary floats, so it rejects 8.27 (8.27 / 0.01 = 826.9999...).
    """
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    document["servers"] = [{"url": base_url}]
    properties = document["components"]["schemas"]["v2.RealizedTraining"]["properties"]
    for name in ("trainingDemandId", "sessionId"):
        properties[name]["type"] = ["integer", "null"]
    assert properties["durationInHours"].pop("multipleOf") == 0.01
    return OpenAPI.from_dict(document)


def assert_two_decimals(response: requests.Response) -> None:
    body = json.loads(response.content, parse_float=Decimal)
    for item in body["items"]:
        duration = Decimal(item["durationInHours"])
        assert duration == duration.quantize(Decimal("0.01")), item


def record_exchanges(client: LuccaClient) -> list[requests.Response]:
    exchanges: list[requests.Response] = []
    client.session.hooks["response"].append(lambda response, **_: exchanges.append(response))
    return exchanges


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"owner_ids": [416, 23], "has_attended": True},
        {"training_ids": [3, 7], "has_attended": False},
        {"session_end_on_after": "2025-02-28", "session_end_on_before": "2025-04-01"},
    ],
    ids=["no-filter", "owners-attended", "trainings", "dates"],
)
def test_requests_and_responses_follow_the_spec(sandbox: SandboxServer, filters: dict) -> None:
    openapi = spec_for(sandbox.url)
    client = LuccaClient(
        ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    )
    exchanges = record_exchanges(client)

    pages = list(client.iter_realized_trainings(**filters))

    assert len(exchanges) == len(pages) >= 1
    for response in exchanges:
        response._content = response.content  # already read by the client
        openapi.validate_request(RequestsOpenAPIRequest(response.request))
        openapi.validate_response(
            RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
        )
        assert_two_decimals(response)
    if len(pages) > 1:
        assert "page=" in exchanges[1].request.url


def test_a_comma_joined_array_would_break_the_contract(sandbox: SandboxServer) -> None:
    """Guards the validator itself: a request serialised the wrong way must be rejected."""
    openapi = spec_for(sandbox.url)
    wrong = requests.Request(
        "GET",
        sandbox.url + REALIZED_TRAININGS_PATH,
        params={"ownerIds": "416,23", "hasAttended": "True"},
        headers={"Authorization": f"lucca application={SANDBOX_KEY}"},
    ).prepare()
    with pytest.raises(Exception, match=r"(?i)ownerIds|hasAttended|invalid"):
        openapi.validate_request(RequestsOpenAPIRequest(wrong))
