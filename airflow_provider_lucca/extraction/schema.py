"""The typed record schema shared by the Parquet files and the Delta / Iceberg tables.

Columns come from the spec: dates are dates, ``durationInHours`` an exact ``decimal(12, 2)``, ids
nullable int64, ``training`` a struct. A value that would need coercion (a duration with 3
decimals, a ``training`` that is not the documented object, a field Lucca adds later...) is not
coerced: its column is null and the value, as received, goes to ``_extra`` as JSON, so nothing is
lost or silently rounded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_lucca.client.errors import LuccaConfigError

if TYPE_CHECKING:
    import pyarrow as pa

ARROW_BATCH_ROWS = 10_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The tables' partition column: the day the run filed the record under (its ``sessionEndsOn``).
PARTITION_COLUMN = "session_end_on"
#: The tables' first partition column when one table holds several Lucca accounts: the tenant's
#: name, so that a run replaces its own tenant's days only.
TENANT_COLUMN = "tenant"


def import_pyarrow(file_format: str, extra: str) -> Any:
    """pyarrow, or a configuration error naming the extra that installs it."""
    try:
        import pyarrow
    except ImportError as exc:
        raise LuccaConfigError(
            f"file_format={file_format!r} needs pyarrow: "
            f"pip install 'airflow-provider-lucca[{extra}]'"
        ) from exc
    return pyarrow


class RecordSchema:
    """The Arrow schema of a record and the conversion of a received record into a row."""

    def __init__(
        self, pa: Any, *, partition_column: bool = False, tenant_column: bool = False
    ) -> None:
        self.pa = pa
        self.training_type = pa.struct(
            [
                ("id", pa.int64()),
                ("title", pa.string()),
                ("categoryId", pa.int64()),
                ("providerUrl", pa.string()),
                ("level", pa.string()),
            ]
        )
        fields = [
            ("id", pa.int64()),
            ("ownerId", pa.int64()),
            ("training", self.training_type),
            ("trainingDemandId", pa.int64()),
            ("sessionId", pa.int64()),
            ("sessionStartsOn", pa.date32()),
            ("sessionEndsOn", pa.date32()),
            ("hasAttended", pa.bool_()),
            ("durationInHours", pa.decimal128(12, 2)),
            ("_extra", pa.string()),
        ]
        if tenant_column:
            fields.append(pa.field(TENANT_COLUMN, pa.string(), nullable=False))
        if partition_column:
            fields.append(pa.field(PARTITION_COLUMN, pa.date32(), nullable=False))
        self.arrow: pa.Schema = pa.schema(fields)

    def batches(
        self,
        payloads: Iterable[list[bytes]],
        day: date | None = None,
        tenant: str | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``ARROW_BATCH_ROWS`` rows from batches of JSON texts.

        :param day: the partition column's value for every row (a schema built with
            ``partition_column=True`` only).
        :param tenant: the tenant column's value for every row (a schema built with
            ``tenant_column=True`` only).
        """
        rows: list[dict[str, Any]] = []
        for batch in payloads:
            for payload in batch:
                row = to_row(json.loads(payload))
                if day is not None:
                    row[PARTITION_COLUMN] = day
                if tenant is not None:
                    row[TENANT_COLUMN] = tenant
                rows.append(row)
                if len(rows) >= ARROW_BATCH_ROWS:
                    yield self.pa.RecordBatch.from_pylist(rows, schema=self.arrow)
                    rows = []
        if rows:
            yield self.pa.RecordBatch.from_pylist(rows, schema=self.arrow)


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("id", "ownerId", "trainingDemandId", "sessionId"):
            ok = value is None or _is_int64(value)
        elif key in ("sessionStartsOn", "sessionEndsOn"):
            ok, value = _as_date(value)
        elif key == "hasAttended":
            ok = value is None or isinstance(value, bool)
        elif key == "durationInHours":
            ok, value = _as_cents(value)
        elif key == "training":
            ok = value is None or _fits_training(value)
        else:
            ok = False
        if ok:
            row[key] = value
        else:
            extra[key] = record[key]
    row["_extra"] = json.dumps(extra, ensure_ascii=False) if extra else None
    return row


_TRAINING_TYPES: dict[str, tuple[type, ...]] = {
    "id": (int,),
    "title": (str,),
    "categoryId": (int,),
    "providerUrl": (str,),
    "level": (str,),
}


def _fits_training(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    for key, item in value.items():
        types = _TRAINING_TYPES.get(key)
        if types is None or (
            item is not None and (isinstance(item, bool) or not isinstance(item, types))
        ):
            return False
        if isinstance(item, int) and not _is_int64(item):
            return False
    return True


def _is_int64(value: object) -> bool:
    """An int that an int64 column holds (a bigger one would make pyarrow raise)."""
    return (
        isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
    )


def _as_date(value: object) -> tuple[bool, object]:
    if value is None:
        return True, None
    if isinstance(value, str) and len(value) == 10:
        try:
            return True, date.fromisoformat(value)
        except ValueError:
            pass
    return False, value


def _as_cents(value: object) -> tuple[bool, object]:
    """An exact two-place decimal from a JSON number, or not at all.

    ``repr`` of a float parsed from JSON is the shortest text that reads back as the same float,
    i.e. the text Lucca sent for any value with up to 15 significant digits: 2.35 -> "2.35".
    """
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False, value
    if isinstance(value, float) and not math.isfinite(value):
        return False, value
    exact = Decimal(repr(value))
    cents = exact.quantize(Decimal("0.01"))
    if cents != exact or abs(cents) >= Decimal("1e10"):
        return False, value
    return True, cents
