"""The tenant list (Variable ``lucca_tenants``): what it accepts, and the error for each mistake,
naming the entry, before any request."""

from __future__ import annotations

import json

import pytest

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.tenants import TenantListError, parse_tenants, single_account

GOOD = [
    {"name": "acme-fr", "conn_id": "lucca_acme_fr"},
    {"name": "acme_de2", "conn_id": "lucca.acme-de", "has_attended": True, "owner_ids": [4, 2]},
]


def test_a_list_parses_into_operator_arguments_with_every_key() -> None:
    tenants = parse_tenants(json.dumps(GOOD))
    assert [tenant.operator_kwargs() for tenant in tenants] == [
        {
            "tenant": "acme-fr",
            "lucca_conn_id": "lucca_acme_fr",
            "owner_ids": None,
            "training_ids": None,
            "has_attended": None,
        },
        {
            "tenant": "acme_de2",
            "lucca_conn_id": "lucca.acme-de",
            "owner_ids": [4, 2],
            "training_ids": None,
            "has_attended": True,
        },
    ]
    assert parse_tenants(GOOD) == tenants  # decoded already (a Variable read with json)
    assert single_account("lucca_default")["tenant"] is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", r"is not JSON \(line 1, column 2\)"),
        ("[]", "must be a non-empty JSON list"),
        ('{"name": "a"}', "must be a non-empty JSON list"),
        ('["acme"]', r"entry 1: expected an object"),
        ('[{"name": "Acme", "conn_id": "c"}]', r"entry 1: Invalid name='Acme': expected 1 to 63"),
        ('[{"name": "../x", "conn_id": "c"}]', r"entry 1: Invalid name='../x'"),
        ('[{"name": "", "conn_id": "c"}]', r"entry 1: Invalid name=''"),
        ('[{"name": "' + "a" * 64 + '", "conn_id": "c"}]', r"entry 1: Invalid name='a{64}'"),
        ('[{"name": "a"}]', r"entry 1: Invalid conn_id=None"),
        ('[{"name": "a", "conn_id": "x y"}]', r"entry 1: Invalid conn_id='x y'"),
        (
            '[{"name": "a", "conn_id": "c"}, {"name": "a", "conn_id": "d"}]',
            r"entry 2: the name 'a' is already entry 1",
        ),
        (
            '[{"name": "a", "conn_id": "c", "has_attend": true}]',
            r"entry 1: unknown key 'has_attend'; an entry takes name, conn_id",
        ),
        ('[{"name": "a", "conn_id": "c", "has_attended": "yes"}]', r"entry 1: .*has_attended"),
        ('[{"name": "a", "conn_id": "c", "owner_ids": "4,2"}]', r"entry 1: .*owner_ids"),
        ('[{"name": "a", "conn_id": "c", "training_ids": [0]}]', r"entry 1: .*training_ids"),
    ],
)
def test_each_mistake_is_refused_naming_the_entry(value: str, message: str) -> None:
    with pytest.raises(TenantListError, match=message) as raised:
        parse_tenants(value)
    assert "Variable 'lucca_tenants'" in str(raised.value)
    assert isinstance(raised.value, LuccaConfigError)


@pytest.mark.parametrize("tenant", ["Acme", "a/b", "tenant=a", "-a", "é"])
def test_the_operator_refuses_a_bad_tenant_when_the_dag_is_parsed(tenant: str) -> None:
    with pytest.raises(LuccaConfigError, match=rf"Invalid tenant={tenant!r}"):
        RealizedTrainingsOperator(task_id="extract", output_path="file:///tmp/lake", tenant=tenant)


def test_a_templated_tenant_is_checked_when_rendered() -> None:
    operator = RealizedTrainingsOperator(
        task_id="extract", output_path="file:///tmp/lake", tenant="{{ params.tenant }}"
    )
    assert operator.tenant == "{{ params.tenant }}"
    operator.tenant = "Not OK"
    with pytest.raises(LuccaConfigError, match="Invalid tenant='Not OK'"):
        operator._tenant()
