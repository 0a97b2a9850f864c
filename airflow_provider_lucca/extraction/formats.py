"""Part file formats: gzip JSON lines (records as received) and Parquet (an explicit schema)."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from airflow_provider_lucca.client.errors import LuccaConfigError

PARQUET_BATCH_ROWS = 10_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class PartFormat(Protocol):
    name: str
    extension: str

    def write(self, batches: Iterable[list[bytes]], local_path: str) -> int:
        """Write batches of UTF-8 JSON record texts to ``local_path``; return the record count.

        Batches, not records: the extraction hands over its spool in ~1 MB slices, with no
        per-record call on the way."""
        ...


class JsonLinesGzip:
    """One record per line, byte for byte the JSON the spooler wrote (the record as received).

    The same records always give the same bytes, hence the same checksum in the manifest.
    """

    name = "jsonl"
    extension = ".jsonl.gz"

    def write(self, batches: Iterable[list[bytes]], local_path: str) -> int:
        # One gzip write per batch, not two per record (deflate's output does not depend on how
        # its input is cut). An empty file name and a fixed mtime keep the header the same on
        # every run, so the same records always give the same sha256.
        count = 0
        with (
            open(local_path, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out,
        ):
            for batch in batches:
                if batch:
                    out.write(b"\n".join(batch) + b"\n")
                    count += len(batch)
        return count


class Parquet:
    """Columns typed from the spec; whatever does not fit them is kept in ``_extra`` as JSON.

    Dates are dates, ``durationInHours`` an exact ``decimal(12, 2)``, ids nullable int64,
    ``training`` a struct. A value that would need coercion (a duration with 3 decimals, a
    ``training`` that is not the documented object...) is not coerced: its column is null and the
    value, as received, goes to ``_extra``, so nothing is lost or silently rounded.
    """

    name = "parquet"
    extension = ".parquet"

    def __init__(self) -> None:
        try:
            import pyarrow as pa
        except ImportError as exc:
            raise LuccaConfigError(
                "file_format='parquet' needs pyarrow: pip install 'airflow-provider-lucca[parquet]'"
            ) from exc
        self._pa = pa
        self.training_type = pa.struct(
            [
                ("id", pa.int64()),
                ("title", pa.string()),
                ("categoryId", pa.int64()),
                ("providerUrl", pa.string()),
                ("level", pa.string()),
            ]
        )
        self.schema = pa.schema(
            [
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
        )

    def write(self, batches: Iterable[list[bytes]], local_path: str) -> int:
        import pyarrow.parquet as pq

        count = 0
        with pq.ParquetWriter(local_path, self.schema, compression="zstd") as writer:
            batch: list[dict[str, Any]] = []
            for payloads in batches:
                for payload in payloads:
                    batch.append(self.to_row(json.loads(payload)))
                    if len(batch) >= PARQUET_BATCH_ROWS:
                        writer.write_table(self._pa.Table.from_pylist(batch, schema=self.schema))
                        count += len(batch)
                        batch = []
            if batch or count == 0:
                writer.write_table(self._pa.Table.from_pylist(batch, schema=self.schema))
                count += len(batch)
        return count

    def to_row(self, record: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in record.items():
            if key in ("id", "ownerId", "trainingDemandId", "sessionId"):
                ok = value is None or _is_int64(value)
            elif key in ("sessionStartsOn", "sessionEndsOn"):
                ok, value = _as_date(value, date)
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


def _as_date(value: object, date_type: Any) -> tuple[bool, object]:
    if value is None:
        return True, None
    if isinstance(value, str) and len(value) == 10:
        try:
            return True, date_type.fromisoformat(value)
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


def get_format(name: str) -> PartFormat:
    if name == "jsonl":
        return JsonLinesGzip()
    if name == "parquet":
        return Parquet()
    raise LuccaConfigError(f"Invalid file_format={name!r}: expected 'jsonl' or 'parquet'.")
