"""Input readers: one per ``format`` of an input in the pipeline config.

A reader turns one *task* (a file, or a byte range of a large file) into a
stream of ``ReadBatch`` objects: documents as Arrow tables with the core schema
columns, plus documents it had to reject (corrupt records: kept, with a reason)
and counts of records it skipped on purpose (WARC revisits, non-HTML payloads).
Readers stream: memory is bounded by the batch size, whatever the input size.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import pyarrow as pa

from curate.params import ConfigError, build_params
from curate.schema import CORE_SCHEMA


@dataclass(frozen=True)
class Task:
    """One unit of work: a whole file, or ``[start, end)`` bytes of it."""

    source: str
    format: str
    path: str
    start: int = 0
    end: int | None = None  # None: to the end of the file
    index: int = 0          # position among the run's tasks, for deterministic order

    @property
    def task_id(self) -> str:
        """``source-stem-<hash of path>``; a cut of a file adds ``-<start, 12 digits>-<hash of the cut>``.

        The tasks of one file sort together and in file order (dedup's ``keep: first`` follows shard
        order, and shards are named after their task), where the whole file's task would; the last
        hash tells cuts of different plans apart, so a finished task is never taken for another one.
        """
        from curate.schema import doc_id

        from curate.readers.fileio import printable

        stem = printable(os.path.basename(self.path)).split(".")[0][:40] or "input"
        name = f"{self.source}-{stem}-{doc_id(self.source, self.path)[:12]}"
        if self.start == 0 and self.end is None:
            return name
        return f"{name}-{self.start:012d}-{doc_id(self.source, f'{self.path}@{self.start}-{self.end}')[:6]}"


@dataclass
class ReadBatch:
    """What a reader yields: kept documents, rejected documents, skipped-record counts."""

    docs: pa.Table | None = None
    rejects: pa.Table | None = None  # must carry a ``reject_reason`` column
    skipped: Counter = field(default_factory=Counter)
    records: int = 0  # input records looked at (documents + rejects + skipped)


class Reader:
    """Base class of a reader. Subclasses set ``format`` and implement ``read``."""

    format: ClassVar[str]
    Options: ClassVar[type] = dataclass(type("Options", (), {}))
    #: File suffixes a directory input is expanded to (None: every file).
    suffixes: ClassVar[tuple[str, ...] | None] = None
    #: A directory is one input (code trees), not a folder of files.
    whole_directories: ClassVar[bool] = False
    #: Rows per yielded batch.
    batch_rows: ClassVar[int] = 1000
    #: The columns of the documents it yields, core ones first (the run's output schema is planned from it).
    schema: ClassVar[pa.Schema] = CORE_SCHEMA

    def __init__(self, source: str, options: Any = None):
        self.source = source
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_config(cls, source: str, raw: dict | None, *, where: str, file: str | None = None) -> "Reader":
        return cls(source, build_params(cls.Options, raw, where=where, file=file))

    def tasks(self, paths: list[str], target_bytes: int, fanout_bytes: int | None = None) -> list[Task]:
        """Split the inputs into tasks; by default one per file.

        ``target_bytes``: the size of a byte range of a file that can be entered anywhere;
        ``fanout_bytes``: the size of a part of a file that must be read from its start (gzip, WARC),
        None for no parts (curate.readers.sizing).
        """
        return [Task(self.source, self.format, p) for p in paths]

    def read(self, task: Task) -> Iterator[ReadBatch]:
        raise NotImplementedError

    def output_fields(self, paths: list[str]) -> list[pa.Field]:
        """The columns of the documents read from ``paths``: ``schema``, unless they depend on the input."""
        return list(self.schema)

    def describe(self) -> dict:
        return {"format": self.format, "options": dataclasses.asdict(self.options)}


#: format -> "module:Class", imported lazily.
READERS: dict[str, str] = {
    "jsonl": "curate.readers.jsonl:JsonlReader",
    "parquet": "curate.readers.parquet:ParquetReader",
    "txt": "curate.readers.books:BookReader",
    "warc": "curate.readers.warc:WarcReader",
    "wet": "curate.readers.warc:WetReader",
    "arc": "curate.readers.warc:ArcReader",
    "html": "curate.readers.html:HtmlFileReader",
    "code": "curate.readers.code:CodeReader",
}


def reader_class(fmt: str, *, key: str = "format", file: str | None = None) -> type[Reader]:
    target = READERS.get(fmt)
    if target is None:
        raise ConfigError(f"unknown format {fmt!r} (known: {', '.join(READERS)})", file=file, key=key)
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def expand_paths(patterns: list[str], reader: type[Reader], *, base_dir: str = ".") -> list[str]:
    """Resolve globs and directories to a sorted, de-duplicated list of input paths.

    A folder that cannot be listed (permissions) stays in the list as itself: its task fails to read
    it, so it is counted and reported as a read error like an unreadable file, never skipped unseen.
    A URL (``s3://``, ``gs://``, ``hf://``, ``https://``) is expanded by its store (curate.remote).
    """
    from curate.remote import expand, is_remote

    found: list[str] = []
    remote: list[str] = []
    for pattern in patterns:
        if is_remote(pattern):
            remote += expand(pattern, reader.suffixes, reader.whole_directories)
            continue
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = os.path.join(base_dir, pattern)
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        for match in matches:
            if os.path.isdir(match) and not reader.whole_directories:
                for root, dirs, files in os.walk(match, onerror=lambda err: found.append(err.filename or match)):
                    dirs.sort()
                    for name in sorted(files):
                        if reader.suffixes is None or name.lower().endswith(reader.suffixes):
                            found.append(os.path.join(root, name))
            else:
                found.append(match)
    return list(dict.fromkeys([*(os.path.abspath(p) for p in found), *remote]))


def rows_to_table(rows: dict[str, list], schema: pa.Schema | None = None) -> pa.Table:
    """Columns collected as Python lists -> an Arrow table (readers build batches this way)."""
    return pa.table(rows, schema=schema) if schema is not None else pa.table(rows)
