"""The tenant list: the Lucca accounts one deployment keeps up to date, and how each is read.

A data engineer maintains it as JSON in the Airflow Variable ``lucca_tenants`` (the UI's Variables
page, ``AIRFLOW_VAR_LUCCA_TENANTS``, or a secrets backend), not in DAG code::

    [
      {"name": "acme-fr", "conn_id": "lucca_acme_fr"},
      {"name": "acme-de", "conn_id": "lucca_acme_de", "has_attended": true}
    ]

``name`` becomes part of the output (``tenant=<name>/`` directories, the tables' ``tenant``
partition column) and of each mapped task's label, so it is a short lowercase slug, unique in the
list; ``conn_id`` is the account's ``lucca`` connection; ``owner_ids``, ``training_ids`` and
``has_attended`` are the operator's filters. Any other key is refused: a typo must not silently
drop a filter. Nothing here imports Airflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.client.query import validate_bool, validate_ids

__all__ = [
    "TENANTS_VARIABLE",
    "Tenant",
    "TenantListError",
    "parse_tenants",
    "single_account",
    "validate_tenant_name",
]

#: The Airflow Variable holding the list.
TENANTS_VARIABLE = "lucca_tenants"
TENANT_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62})")
_CONN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,250}")
_KEYS = ("name", "conn_id", "owner_ids", "training_ids", "has_attended")
_EXAMPLE = '[{"name": "acme-fr", "conn_id": "lucca_acme_fr"}]'


class TenantListError(LuccaConfigError):
    """The tenant list is not valid; the message names the entry and what is expected."""


def validate_tenant_name(value: object, *, what: str = "tenant") -> str:
    """A name that is safe as a directory, a partition value and a task label."""
    if not isinstance(value, str) or not TENANT_NAME_RE.fullmatch(value):
        raise LuccaConfigError(
            f"Invalid {what}={value!r}: expected 1 to 63 characters among lowercase letters, "
            "digits, '-' and '_', starting with a letter or digit (e.g. 'acme-fr')."
        )
    return value


@dataclass(frozen=True)
class Tenant:
    """One Lucca account of the list."""

    name: str
    conn_id: str
    owner_ids: tuple[int, ...] | None = None
    training_ids: tuple[int, ...] | None = None
    has_attended: bool | None = None

    def operator_kwargs(self) -> dict[str, Any]:
        """The ``RealizedTrainingsOperator`` arguments of this tenant (for ``expand_kwargs``):
        JSON-friendly, as mapped arguments travel through XCom, and every key every time, as a
        mapped task group looks its arguments up by name."""
        return _kwargs(
            self.name, self.conn_id, self.owner_ids, self.training_ids, self.has_attended
        )


def single_account(conn_id: str) -> dict[str, Any]:
    """The operator arguments of one account read without a tenant list: no tenant, so the
    single-account layout (no ``tenant=`` directory, no ``tenant`` column)."""
    return _kwargs(None, conn_id, None, None, None)


def _kwargs(
    name: str | None,
    conn_id: str,
    owner_ids: tuple[int, ...] | None,
    training_ids: tuple[int, ...] | None,
    has_attended: bool | None,
) -> dict[str, Any]:
    return {
        "tenant": name,
        "lucca_conn_id": conn_id,
        "owner_ids": None if owner_ids is None else list(owner_ids),
        "training_ids": None if training_ids is None else list(training_ids),
        "has_attended": has_attended,
    }


def parse_tenants(value: object, *, source: str = f"Variable {TENANTS_VARIABLE!r}") -> list[Tenant]:
    """The tenants of a JSON list (its text, or already decoded), every entry checked.

    :param source: where the list comes from, for the messages.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise TenantListError(
                f"{source} is not JSON (line {getattr(exc, 'lineno', '?')}, column "
                f"{getattr(exc, 'colno', '?')}): expected a list like {_EXAMPLE}."
            ) from None
    if not isinstance(value, list) or not value:
        raise TenantListError(f"{source} must be a non-empty JSON list like {_EXAMPLE}.")
    tenants: list[Tenant] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(value, start=1):
        tenant = _parse_entry(entry, f"{source}, entry {number}")
        if tenant.name in seen:
            raise TenantListError(
                f"{source}, entry {number}: the name {tenant.name!r} is already entry "
                f"{seen[tenant.name]}; each tenant needs its own name (it is its output)."
            )
        seen[tenant.name] = number
        tenants.append(tenant)
    return tenants


def _parse_entry(entry: object, where: str) -> Tenant:
    if not isinstance(entry, Mapping):
        raise TenantListError(f"{where}: expected an object like {_EXAMPLE[1:-1]}.")
    unknown = [key for key in entry if key not in _KEYS]
    if unknown:
        raise TenantListError(
            f"{where}: unknown key {unknown[0]!r}; an entry takes {', '.join(_KEYS)}."
        )
    try:
        name = validate_tenant_name(entry.get("name"), what="name")
        conn_id = entry.get("conn_id")
        if not isinstance(conn_id, str) or not _CONN_ID_RE.fullmatch(conn_id):
            raise LuccaConfigError(
                f"Invalid conn_id={conn_id!r}: expected the id of a lucca connection "
                "(letters, digits, '_', '-', '.')."
            )
        return Tenant(
            name=name,
            conn_id=conn_id,
            owner_ids=_ids(entry, "owner_ids"),
            training_ids=_ids(entry, "training_ids"),
            has_attended=validate_bool("has_attended", entry.get("has_attended")),
        )
    except TenantListError:
        raise
    except LuccaConfigError as exc:
        raise TenantListError(f"{where}: {exc}") from None


def _ids(entry: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = entry.get(key)
    return None if value is None else validate_ids(key, value)
