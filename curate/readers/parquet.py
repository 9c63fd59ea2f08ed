"""Parquet files of pre-extracted documents, read one row group at a time.

Large files are split by row groups (one task per group range), so memory stays
bounded by the row-group size whatever the file size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.readers import ReadBatch, Reader, Task
from curate.readers.fileio import open_raw, printable
from curate.remote import is_remote
from curate.schema import doc_id


@dataclass
class ParquetOptions:
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    keep_fields: list[str] = field(default_factory=list)
    """Other columns to carry over unchanged."""


class ParquetReader(Reader):
    format = "parquet"
    Options = ParquetOptions
    suffixes = (".parquet",)

    def output_fields(self, paths: list[str]) -> list[pa.Field]:
        """The core columns, then each of ``keep_fields`` that the files hold, with its type in them."""
        core = list(self.schema)
        types: dict[str, tuple[pa.DataType, str]] = {}
        for path in paths:
            try:
                schema = pq.read_schema(_source(path))
            except Exception:  # noqa: BLE001 - unreadable: its task reports the error
                continue
            for name in self.options.keep_fields:
                if name not in schema.names or name in types and types[name][0] == schema.field(name).type:
                    continue
                if name in types:
                    raise ValueError(f"keep_fields: column {name!r} is {types[name][0]} in {types[name][1]} but "
                                     f"{schema.field(name).type} in {path}: one column, one type")
                types[name] = (schema.field(name).type, path)
        return core + [pa.field(n, types[n][0]) for n in dict.fromkeys(self.options.keep_fields)
                       if n in types and n not in {f.name for f in core}]

    def tasks(self, paths: list[str], target_bytes: int, fanout_bytes: int | None = None) -> list[Task]:
        tasks = []
        for path in paths:
            try:
                meta = pq.ParquetFile(_source(path)).metadata
            except Exception:  # unreadable: one task, whose read reports the error
                tasks.append(Task(self.source, self.format, path))
                continue
            group, start, acc = 0, 0, 0
            for group in range(meta.num_row_groups):
                acc += meta.row_group(group).total_byte_size
                if acc >= target_bytes and group + 1 < meta.num_row_groups:
                    tasks.append(Task(self.source, self.format, path, start, group + 1))
                    start, acc = group + 1, 0
            tasks.append(Task(self.source, self.format, path, start, None if start == 0 else meta.num_row_groups))
        return tasks

    def read(self, task: Task) -> Iterator[ReadBatch]:
        opts = self.options
        parquet = pq.ParquetFile(_source(task.path))
        names = parquet.schema_arrow.names
        if opts.text_field not in names:
            raise ValueError(f"{task.path}: no column {opts.text_field!r} (columns: {', '.join(names)}); set text_field")
        columns = [c for c in dict.fromkeys([opts.text_field, opts.id_field, opts.url_field, *opts.keep_fields]) if c in names]
        end = task.end if task.end is not None else parquet.metadata.num_row_groups
        groups = list(range(task.start, end))
        row = sum(parquet.metadata.row_group(g).num_rows for g in range(task.start))
        for batch in parquet.iter_batches(batch_size=self.batch_rows, row_groups=groups, columns=columns):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            if opts.id_field in names:
                given = _as_string(table[opts.id_field])
            else:
                given = pa.nulls(n, pa.string())
            if given.null_count:
                made = pa.array([doc_id(self.source, f"{task.path}:{row + i}") for i in range(n)], pa.string())
                ids = pc.if_else(pc.is_null(given), made, given)
            else:
                ids = given
            text = table[opts.text_field]
            if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
                text = _as_string(text)
            url = _as_string(table[opts.url_field]) if opts.url_field in names else pa.nulls(n, pa.string())
            docs = pa.table({"id": ids, "source": pa.array([self.source] * n, pa.string()), "text": text, "url": url,
                             "path": pa.array([printable(task.path)] * n, pa.string())})
            for name in opts.keep_fields:
                if name in names and name not in docs.column_names:
                    docs = docs.append_column(name, table[name])
            missing = pc.is_null(docs["text"])
            rejects = None
            if pc.any(missing).as_py():
                rejects = docs.filter(missing).append_column(
                    "reject_reason", pa.array(["no-text-field"] * pc.sum(missing).as_py(), pa.string()))
                docs = docs.filter(pc.invert(missing))
            row += n
            yield ReadBatch(docs=docs, rejects=rejects, records=n)


def _source(path: str):
    """What pyarrow opens: a local path as it is (its own reader), a URL as a retrying ranged file."""
    return open_raw(path) if is_remote(path) else path


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as strings. Binary bytes are taken as they are (a cast would fail the whole batch on one
    value that is not UTF-8); the runner moves such rows to the rejects with ``bad-utf8:<column>``."""
    if pa.types.is_binary(column.type):
        return pa.chunked_array([c.view(pa.string()) for c in column.chunks], pa.string())
    if pa.types.is_large_binary(column.type):
        return pa.chunked_array([c.view(pa.large_string()) for c in column.chunks], pa.large_string())
    return column.cast(pa.string())
