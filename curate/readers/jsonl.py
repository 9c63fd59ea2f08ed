"""JSON Lines of pre-extracted documents (``.jsonl``, ``.jsonl.gz``, ``.json``).

Large uncompressed files are split into byte ranges, one task each: a task
starts at the first line that begins inside its range and ends with the line
that crosses its end, so every line belongs to exactly one task. A line that
is not valid JSON, or has no text, is a reject with its reason, never a crash.
"""

from __future__ import annotations

import bisect
import io
import json
import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from curate.readers import ReadBatch, Reader, Task
from curate.readers.fileio import LenientGzip, input_size, open_lenient, open_raw, printable
from curate.readers.sizing import byte_ranges, estimated_bytes, part_ranges
from curate.remote import is_remote
from curate.schema import doc_id, invalid_utf8

BLOCK_BYTES = 8 << 20


@dataclass
class JsonlOptions:
    text_field: str = "text"
    """Field that holds the document text (e.g. ``content``)."""
    id_field: str = "id"
    """Field whose value is kept as the document id when present."""
    url_field: str = "url"
    keep_fields: list[str] = field(default_factory=list)
    """Other fields to carry over as columns (as strings)."""


class JsonlReader(Reader):
    format = "jsonl"
    Options = JsonlOptions
    suffixes = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")

    def output_fields(self, paths: list[str]) -> list[pa.Field]:
        """The core columns, then ``keep_fields`` as strings (nested values are kept as JSON text)."""
        core = list(self.schema)
        return core + [pa.field(n, pa.string()) for n in dict.fromkeys(self.options.keep_fields)
                       if n not in {f.name for f in core}]

    def tasks(self, paths: list[str], target_bytes: int, fanout_bytes: int | None = None) -> list[Task]:
        """Byte ranges of plain files; parts (compressed byte ranges, each read from the start) of ``.gz``."""
        tasks = []
        for path in paths:
            if path.endswith(".gz") and is_remote(path):  # not read in parts: each would download it again
                tasks.append(Task(self.source, self.format, path))
                continue
            size = input_size(path) if is_remote(path) or os.path.isfile(path) else 0
            if path.endswith(".gz"):
                ranges = part_ranges(size, estimated_bytes(path, size), fanout_bytes)
            else:
                ranges = byte_ranges(size, target_bytes, legacy=fanout_bytes is None)
            tasks += [Task(self.source, self.format, path, start, end) for start, end in ranges]
        return tasks

    def read(self, task: Task) -> Iterator[ReadBatch]:
        for offsets, lines in _line_blocks(task):
            yield self._parse_block(task, offsets, lines)

    def _parse_block(self, task: Task, offsets: list[int], lines: list[bytes]) -> ReadBatch:
        fast = self._parse_block_vectorized(task, offsets, lines)
        return fast if fast is not None else self._parse_block_per_line(task, offsets, lines)

    def _parse_block_vectorized(self, task: Task, offsets: list[int], lines: list[bytes]) -> ReadBatch | None:
        """The common case, all in Arrow: every line is an object with a string text field."""
        opts = self.options
        try:
            table = pajson.read_json(io.BytesIO(b"\n".join(lines)),
                                     read_options=pajson.ReadOptions(block_size=BLOCK_BYTES * 2))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        names = table.column_names
        if table.num_rows != len(lines) or opts.text_field not in names:
            return None
        text = table[opts.text_field]
        if not pa.types.is_string(text.type) or text.null_count:
            return None
        n = table.num_rows
        given = table[opts.id_field] if opts.id_field in names else pa.nulls(n, pa.string())
        if not pa.types.is_string(given.type):
            try:
                given = given.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        if given.null_count:
            made = pa.array([doc_id(self.source, f"{task.path}:{o}") for o in offsets], pa.string())
            given = pc.if_else(pc.is_null(given), made, given)
        url = table[opts.url_field] if opts.url_field in names else pa.nulls(n, pa.string())
        if not pa.types.is_string(url.type):
            return None
        columns = {"id": given, "source": pa.array([self.source] * n, pa.string()), "text": text, "url": url,
                   "path": pa.array([printable(task.path)] * n, pa.string())}
        for name in opts.keep_fields:
            if name not in names:
                columns[name] = pa.nulls(n, pa.string())
            elif pa.types.is_string(table[name].type):
                columns[name] = table[name]
            else:
                return None  # nested values: the per-line path serialises them as JSON
        docs = pa.table(columns)
        if invalid_utf8(docs):
            return None  # Arrow's JSON parser passes bytes that are not UTF-8: the per-line path names the lines
        return ReadBatch(docs=docs, records=n)

    def _parse_block_per_line(self, task: Task, offsets: list[int], lines: list[bytes]) -> ReadBatch:
        """Lines that are not all well-formed: find the bad ones and quarantine them with a reason."""
        opts = self.options
        ids, texts, urls = [], [], []
        extra = {name: [] for name in opts.keep_fields}
        bad_offsets, bad_reasons, bad_texts = [], [], []
        records = _parse_lines(lines)
        for offset, line, record in zip(offsets, lines, records):
            if isinstance(record, Exception):
                bad_offsets.append(offset)
                bad_reasons.append(f"bad-json:{type(record).__name__}")
                bad_texts.append(line[:10000].decode("utf-8", "replace"))
                continue
            text = record.get(opts.text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                bad_offsets.append(offset)
                bad_reasons.append("no-text-field" if text is None else "text-not-a-string")
                bad_texts.append(line[:10000].decode("utf-8", "replace"))
                continue
            given = record.get(opts.id_field)
            url = record.get(opts.url_field)
            kept = {name: record.get(name) for name in opts.keep_fields}
            kept = {k: None if v is None else v if isinstance(v, str) else json.dumps(v) for k, v in kept.items()}
            if not all(_utf8_ok(v) for v in (text, given, url, *kept.values())):
                bad_offsets.append(offset)
                bad_reasons.append("bad-json:lone-surrogate")  # a "\ud800" escape: valid JSON, not UTF-8
                bad_texts.append(line[:10000].decode("utf-8", "replace"))
                continue
            ids.append(str(given) if given is not None else doc_id(self.source, f"{task.path}:{offset}"))
            texts.append(text)
            urls.append(None if url is None else str(url))
            for name, value in kept.items():
                extra[name].append(value)
        n = len(ids)
        docs = pa.table(
            {"id": ids, "source": [self.source] * n, "text": texts, "url": pa.array(urls, pa.string()),
             "path": [printable(task.path)] * n, **{k: pa.array(v, pa.string()) for k, v in extra.items()}}
        )
        rejects = None
        if bad_offsets:
            m = len(bad_offsets)
            rejects = pa.table(
                {"id": [doc_id(self.source, f"{task.path}:{o}") for o in bad_offsets], "source": [self.source] * m,
                 "text": bad_texts, "path": [printable(task.path)] * m, "reject_reason": bad_reasons}
            )
        return ReadBatch(docs=docs, rejects=rejects, records=len(lines))


def _utf8_ok(value) -> bool:
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _parse_lines(lines: list[bytes]) -> list:
    out = []
    for line in lines:
        try:
            out.append(json.loads(line.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as err:
            out.append(err)
    return out


def _line_blocks(task: Task) -> Iterator[tuple[list[int], list[bytes]]]:
    """Yield (byte offsets, non-empty lines) in blocks of about BLOCK_BYTES, for this task's range.

    Every complete line before a corrupt or truncated stretch is yielded before
    the error is raised, so the runner keeps them and quarantines only the rest.
    """
    if task.path.endswith(".gz") and (task.start or task.end is not None):
        yield from _gzip_part_blocks(task)
        return
    chunks = _gzip_chunks(task.path) if task.path.endswith(".gz") else _plain_chunks(task)
    position = max(task.start - 1, 0) if not task.path.endswith(".gz") else 0
    pending = b""
    skip_partial = task.start > 0 and not task.path.endswith(".gz")
    for chunk in chunks:
        data = pending + chunk
        if skip_partial:  # the line cut by our start belongs to the previous task
            cut = data.find(b"\n")
            if cut < 0:
                pending, position = b"", position + len(data)
                continue
            data, position, skip_partial = data[cut + 1:], position + cut + 1, False
        cut = data.rfind(b"\n") + 1
        block, pending = data[:cut], data[cut:]
        if not block:
            continue
        offsets, lines, stop = _split(block, position, task.end)
        position += len(block)
        if lines:
            yield offsets, lines
        if stop:
            return
    if pending and not skip_partial:
        offsets, lines, _ = _split(pending, position, task.end)
        if lines:
            yield offsets, lines


def _plain_chunks(task: Task) -> Iterator[bytes]:
    with open_raw(task.path) as f:
        if task.start > 0:
            f.seek(task.start - 1)  # from the byte before: a newline there means our first line is whole
        while True:
            chunk = f.read(BLOCK_BYTES)
            if not chunk:
                return
            yield chunk


def _gzip_chunks(path: str) -> Iterator[bytes]:
    """Decompressed blocks; a corrupt member is skipped, and the damage is raised once all else is read."""
    with open_lenient(path) as stream:
        while chunk := stream.read(BLOCK_BYTES):
            yield chunk
        if stream.error:
            raise EOFError(f"{stream.error} in {path} (resynced {stream.resyncs}x): every line that "
                           "decompressed was read")


def _gzip_part_blocks(task: Task) -> Iterator[tuple[list[int], list[bytes]]]:
    """The lines of one part of a ``.gz`` file: those whose compressed position is in ``[start, end)``.

    The file is decompressed from its start (lines keep their offsets in the whole decompressed file,
    so ids are those of an unsplit read), blocks before the part are not split into lines, and reading
    stops after the part. The last part reads to the end and reports damage as an unsplit read does.
    """
    with open_lenient(task.path) as stream:
        where = stream.compressed_position if isinstance(stream, LenientGzip) else (lambda offset: offset)
        position, pending = 0, b""
        while True:
            chunk = stream.read(BLOCK_BYTES)
            if not chunk and task.end is None and getattr(stream, "error", None):
                raise EOFError(f"{stream.error} in {task.path} (resynced {stream.resyncs}x): every line that "
                               "decompressed was read")
            data = pending + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            block, pending = data[:cut], data[cut:]
            if block and where(position + len(block) - 1) >= task.start:  # else all before this part
                offsets, lines, _ = _split(block, position, None)
                first = bisect.bisect_left(offsets, task.start, key=where)
                stop = len(offsets) if task.end is None else bisect.bisect_left(offsets, task.end, key=where)
                if stop > first:
                    yield offsets[first:stop], lines[first:stop]
                if stop < len(offsets):
                    return  # the next line belongs to the next part
            position += len(block)
            if not chunk:
                return


def _split(block: bytes, base: int, end: int | None) -> tuple[list[int], list[bytes], bool]:
    arr = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    stops = np.concatenate((newlines, [len(block)]))
    offsets, lines, stop = [], [], False
    for s, e in zip(starts.tolist(), stops.tolist()):
        if end is not None and base + s >= end:
            stop = True
            break
        line = block[s:e].strip()
        if line:
            offsets.append(base + s)
            lines.append(line)
    return offsets, lines, stop
