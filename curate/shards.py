"""Parquet shards committed atomically: written under a temporary name, renamed when complete.

A reader of the output directory (DuckDB, the next run) never sees half a file:
either ``name.parquet`` exists and is whole, or it does not exist.

An output in an object store (``s3://``, ``gs://``: ``curate.storage``) has no rename: a shard is written
to local scratch space and uploaded whole to its final key when the task commits; an object appears
only when its upload completes, so the rule holds there too.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import storage
from curate.schema import invalid_utf8

TMP_SUFFIX = ".tmp"


def _tmp_name(path: str) -> str:
    """A temporary name no other writer uses (a worker orphaned by a crash may still be writing)."""
    return f"{path}{TMP_SUFFIX}-{os.getpid()}-{os.urandom(3).hex()}"


class ShardWriter:
    """Streams tables into ``{stem}.parquet`` (rolling to ``{stem}.1.parquet`` ... when large).

    Tables whose schema differs from the open file's are cast to it when the
    cast is safe (a column of nulls becoming a string column); otherwise a new
    part starts, so one odd batch never fails a task.
    """

    def __init__(self, directory: str, stem: str, *, max_rows: int = 200_000, compression: str = "zstd",
                 schema: pa.Schema | None = None):
        self.directory, self.stem = directory, stem
        self.schema = schema  # the run's one schema for this folder: every table is conformed to it
        self.max_rows, self.compression = max_rows, compression
        self.parts: list[str] = []
        self._tmp: dict[str, str] = {}
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0

    def _part_path(self, index: int) -> str:
        suffix = "" if index == 0 else f".{index}"
        return storage.join(self.directory, f"{self.stem}{suffix}.parquet")

    def _open(self, schema: pa.Schema) -> None:
        self.close_part()
        storage.makedirs(self.directory)
        path = self._part_path(len(self.parts))
        self.parts.append(path)
        self._tmp[path] = storage.local_temp(path) if storage.is_remote(path) else _tmp_name(path)
        self._writer = pq.ParquetWriter(self._tmp[path], schema, compression=self.compression)
        self._rows_in_part = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.schema is not None:
            from curate.output_schema import conform_to

            table = conform_to(table, self.schema)
        bad = invalid_utf8(table)
        if bad:  # the runner quarantines these at the reader; a shard holding one would break every query
            name, mask = next(iter(bad.items()))
            raise ValueError(f"{self.stem}: column {name!r} holds {int(mask.sum())} string(s) that are not valid "
                             "UTF-8; refusing to write them (DuckDB could not read the shard)")
        table = _normalize_nulls(table)
        if self._writer is not None and self._rows_in_part < self.max_rows and not table.schema.equals(self._writer.schema):
            table = _cast_or_none(table, self._writer.schema) or table
        if self._writer is None or self._rows_in_part >= self.max_rows or not table.schema.equals(self._writer.schema):
            self._open(table.schema)
        self._writer.write_table(table, row_group_size=64_000)
        self._rows_in_part += table.num_rows
        self.rows += table.num_rows

    def close_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self) -> list[str]:
        """Close and rename (or upload) every part into place; returns the final paths."""
        self.close_part()
        for path in self.parts:
            storage.put_file(self._tmp[path], path)
        return list(self.parts)

    def abort(self) -> None:
        self.close_part()
        for path in self.parts:
            if os.path.exists(self._tmp[path]):
                os.remove(self._tmp[path])


def _normalize_nulls(table: pa.Table) -> pa.Table:
    """Columns of type null (a batch where a signal was never set) become strings."""
    if not any(pa.types.is_null(f.type) for f in table.schema):
        return table
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _cast_or_none(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    if set(table.column_names) != set(schema.names):
        return None
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def remove_stale(directory: str, stem: str) -> None:
    """Delete what an interrupted attempt of a task left (whole or temporary parts).

    In an object store only whole objects can be there (an upload that did not complete leaves none)."""
    if storage.is_remote(directory):
        import fnmatch

        for path in storage.list_prefix(directory, f"{stem}."):  # this task's objects only: no whole listing
            if fnmatch.fnmatchcase(storage.basename(path), f"{stem}.parquet") or \
                    fnmatch.fnmatchcase(storage.basename(path), f"{stem}.*.parquet"):
                storage.remove(path)
        return
    for pattern in (f"{stem}.parquet", f"{stem}.parquet{TMP_SUFFIX}*", f"{stem}.*.parquet", f"{stem}.*.parquet{TMP_SUFFIX}*"):
        for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
            os.remove(path)


def write_json_atomic(path: str, data: Any) -> None:
    if storage.is_remote(path):
        storage.write_json(path, data)
        return
    tmp = _tmp_name(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_table_atomic(path: str, table: pa.Table) -> None:
    if storage.is_remote(path):
        storage.write_table(path, table)
        return
    tmp = _tmp_name(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
