"""Part file formats: gzip JSON lines (records as received) and Parquet (typed, :mod:`.schema`)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from typing import Protocol

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.schema import RecordSchema, import_pyarrow


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
    """Typed columns (see :mod:`.schema`); whatever does not fit them is kept in ``_extra``."""

    name = "parquet"
    extension = ".parquet"

    def __init__(self) -> None:
        self._pa = import_pyarrow("parquet", "parquet")
        self.schema = RecordSchema(self._pa)

    def write(self, batches: Iterable[list[bytes]], local_path: str) -> int:
        import pyarrow.parquet as pq

        count = 0
        with pq.ParquetWriter(local_path, self.schema.arrow, compression="zstd") as writer:
            for batch in self.schema.batches(batches):
                writer.write_batch(batch)
                count += batch.num_rows
            if count == 0:
                writer.write_table(self.schema.arrow.empty_table())
        return count


def get_format(name: str) -> PartFormat:
    if name == "jsonl":
        return JsonLinesGzip()
    if name == "parquet":
        return Parquet()
    raise LuccaConfigError(f"Invalid file_format={name!r}: expected 'jsonl' or 'parquet'.")
