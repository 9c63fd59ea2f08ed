"""Documents for the tokenizer commands: curated output or plain text/JSONL/Parquet inputs.

Every function here yields Arrow tables with the columns ``id``, ``source``,
``lang`` (null when the input has none) and ``text``, a batch at a time, so
memory stays bounded by the batch size whatever the corpus size.

Curated output is a run directory (``DIR`` with ``DIR/docs/*.parquet``) or the
``docs`` folder itself; its ``source`` and ``lang`` columns are kept. Plain
inputs take their source name from ``--source``.

A run written to an object store (``s3://bucket/run/``, ``gs://``) is read there: its
``docs/*.parquet`` are listed through ``curate.storage`` and read by range requests
(``curate.remote``), with the store's usual credentials.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from curate import storage
from curate.arrays import string_array
from curate.schema import doc_id

FORMATS = ("curated", "parquet", "jsonl", "txt")
COLUMNS = ("id", "source", "lang", "text")
BATCH_ROWS = 1000
#: For training, a plain text file is split at blank lines into documents of about this many characters,
#: so that a few books still give a held-out slice; ``curate tokenize`` keeps a file as one document.
TXT_DOC_CHARS = 64 << 10

DOC_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("source", pa.string()),
                        pa.field("lang", pa.string()), pa.field("text", pa.string())])


class InputError(ValueError):
    """An input the tokenizer commands cannot read: names the path and why."""


class PathError(InputError):
    """A path that is missing or of the wrong kind for its argument: a usage error (exit code 2)."""


@dataclass(frozen=True)
class InputFile:
    """One file to read, with its format and (for plain inputs) the source name its documents get."""

    path: str
    format: str
    source: str


@dataclass
class ReadCounts:
    """What reading skipped, by reason (documents with no text, undecodable files ...)."""

    skipped: Counter = field(default_factory=Counter)
    langs: Counter = field(default_factory=Counter)
    """Documents seen per ``lang`` ("none" when missing) where a language filter applied, before it."""


def is_curated(path: str) -> bool:
    """A curate run directory (has ``docs/*.parquet``) or such a ``docs`` folder."""
    if not os.path.isdir(path):
        return False
    docs = os.path.join(path, "docs")
    return bool(glob.glob(os.path.join(docs, "*.parquet"))) or (
        os.path.basename(os.path.normpath(path)) == "docs" and bool(glob.glob(os.path.join(path, "*.parquet"))))


def is_run_output(path: str) -> bool:
    """A curate run directory (``manifest.json``, or ``docs`` and ``stats`` folders), or the ``docs`` folder
    of one, whether or not any document was kept: its stats and rejects are never text to read."""
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, "manifest.json")) or all(
            os.path.isdir(os.path.join(path, name)) for name in ("docs", "stats")):
        return True
    parent = os.path.dirname(os.path.abspath(path))
    return os.path.basename(os.path.normpath(path)) == "docs" and os.path.isfile(os.path.join(parent, "manifest.json"))


def input_files(paths: list[str], fmt: str = "auto", source: str = "input") -> list[InputFile]:
    """Expand inputs (files, directories, globs) into a sorted list of files with their format.

    ``fmt="auto"`` reads a curate run directory as curated output and guesses
    plain files from their suffix.
    """
    if fmt not in ("auto", *FORMATS):
        raise InputError(f"unknown format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    found: list[InputFile] = []
    for pattern in paths:
        if storage.is_remote(pattern):
            found += _remote_input_files(pattern, fmt, source)
            continue
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise PathError(f"{pattern}: no such file")
        for match in matches:
            if not os.path.exists(match):
                raise PathError(f"{match}: no such file or directory")
            if fmt in ("auto", "curated") and is_curated(match):
                docs = os.path.join(match, "docs") if os.path.isdir(os.path.join(match, "docs")) else match
                found += [InputFile(p, "curated", "") for p in sorted(glob.glob(os.path.join(docs, "*.parquet")))]
                continue
            if fmt in ("auto", "curated") and is_run_output(match):
                raise InputError(f"{match}: a curate output with no documents (no docs/*.parquet: every document "
                                 "was rejected, or the run has not finished; `curate stats` shows why)")
            if fmt == "curated":
                raise PathError(f"{match}: not a curate output directory (no docs/*.parquet)")
            files = [match]
            if os.path.isdir(match):
                files = sorted(os.path.join(root, name) for root, _, names in os.walk(match) for name in names)
            for path in files:
                file_format = fmt if fmt != "auto" else _guess_format(path)
                if file_format is None:
                    if os.path.isdir(match):
                        continue  # an unrelated file inside a directory input
                    raise PathError(f"{path}: cannot tell the format from the name; pass --format")
                found.append(InputFile(path, file_format, source))
    unique = list({(f.path, f.format): f for f in found}.values())
    if not unique:
        raise PathError(f"no input files in {', '.join(paths)}")
    return unique


def _remote_input_files(pattern: str, fmt: str, source: str) -> list[InputFile]:
    """A run in an object store (its ``manifest.json`` is there: its ``docs/*.parquet``), or remote
    files (a glob, or one object). Errors of the store (no bucket, no credentials) are one line
    (``curate.remote``: a ``ConfigError``)."""
    from curate.remote import exists, glob as remote_glob

    base = pattern.rstrip("/")
    if not glob.has_magic(base) and fmt in ("auto", "curated") and exists(storage.join(base, "manifest.json")):
        docs = remote_glob(storage.join(base, "docs", "*.parquet"))
        if not docs:
            raise InputError(f"{pattern}: a curate output with no documents (no docs/*.parquet: every document "
                             "was rejected, or the run has not finished; `curate stats` shows why)")
        return [InputFile(p, "curated", "") for p in docs]
    if fmt == "curated":
        raise PathError(f"{pattern}: not a curate output (no manifest.json there)")
    matches = remote_glob(base) if glob.has_magic(base) else ([base] if exists(base) else [])
    if not matches:
        raise PathError(f"{pattern}: no such file")
    found = []
    for path in matches:
        file_format = fmt if fmt != "auto" else _guess_format(path)
        if file_format is None:
            raise PathError(f"{path}: cannot tell the format from the name; pass --format")
        found.append(InputFile(path, file_format, source))
    return found


def _parquet(path: str) -> pq.ParquetFile:
    """A Parquet file, local or remote (read by range requests: the footer, then the columns asked for)."""
    return pq.ParquetFile(storage.open_read(path)) if storage.is_remote(path) else pq.ParquetFile(path)


def _size(path: str) -> int:
    return storage.size(path) if storage.is_remote(path) else os.path.getsize(path)


def _guess_format(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".txt", ".text", ".md")):
        return "txt"
    return None


def read_documents(item: InputFile, counts: ReadCounts | None = None, text_field: str = "text",
                   txt_doc_chars: int | None = TXT_DOC_CHARS, rows: tuple[int, int] | None = None) -> Iterator[pa.Table]:
    """Yield batches of (id, source, lang, text) from one input file; rows without text are counted, not kept.

    A plain text file is split at blank lines into documents of about ``txt_doc_chars`` characters
    (``None``: the whole file is one document). ``rows`` reads only the rows ``[first, end)`` of a
    Parquet file (a part of a big file: see ``parquet_row_ranges``); the documents and their ids are
    those the whole-file read gives for these rows.
    """
    counts = counts if counts is not None else ReadCounts()
    if rows is not None and item.format not in ("curated", "parquet"):
        raise InputError(f"{item.path}: only Parquet inputs are read by row ranges")
    if item.format in ("curated", "parquet"):
        batches = _parquet_batches(item, text_field, rows)
    elif item.format == "jsonl":
        batches = _jsonl_batches(item, text_field, counts)
    elif item.format == "txt":
        batches = _txt_batches(item, counts, txt_doc_chars)
    else:
        raise InputError(f"{item.path}: unknown format {item.format!r}")
    for table in batches:
        missing = pc.is_null(table["text"])
        n_missing = int(pc.sum(missing).as_py() or 0)
        if n_missing:
            counts.skipped["no-text"] += n_missing
            table = table.filter(pc.invert(missing))
        if table.num_rows:
            yield table


def _parquet_batches(item: InputFile, text_field: str, rows: tuple[int, int] | None = None) -> Iterator[pa.Table]:
    try:
        parquet = _parquet(item.path)
    except Exception as err:
        raise InputError(f"{item.path}: not a readable Parquet file ({err})") from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise InputError(f"{item.path}: no column {text_field!r} (columns: {', '.join(names)})")
    wanted = [c for c in ("id", "source", "lang", text_field) if c in names]
    row, first, end, groups = 0, 0, None, None
    if rows is not None:
        first, end = rows
        meta = parquet.metadata
        groups, start = [], 0  # the row groups that hold [first, end): only those are read
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if start < end and start + n > first:
                if not groups:
                    row = start
                groups.append(g)
            start += n
        if not groups:
            return
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted, row_groups=groups):
        if rows is not None:  # a group cut into several parts is read by each: keep this part's rows
            lo, hi = max(first - row, 0), min(end - row, batch.num_rows)
            if hi <= lo:
                row += batch.num_rows
                if row >= end:
                    return
                continue
            row += lo
            batch = batch.slice(lo, hi - lo)
        n = batch.num_rows
        text = batch.column(text_field)
        if not pa.types.is_string(text.type):
            text = text.cast(pa.string())
        if "id" in names:
            ids = batch.column("id").cast(pa.string())
        else:
            ids = string_array([doc_id(item.source, f"{item.path}:{row + i}") for i in range(n)])
        if item.format == "curated" and "source" in names:
            sources = batch.column("source").cast(pa.string())
        else:
            sources = string_array([item.source] * n)
        lang = batch.column("lang").cast(pa.string()) if "lang" in names else pa.nulls(n, pa.string())
        row += n
        yield pa.Table.from_arrays([ids, sources, lang, text], schema=DOC_SCHEMA)
        if end is not None and row >= end:
            return


def _jsonl_batches(item: InputFile, text_field: str, counts: ReadCounts) -> Iterator[pa.Table]:
    from curate.readers.jsonl import JsonlOptions, JsonlReader
    from curate.readers import Task

    reader = JsonlReader(item.source, JsonlOptions(text_field=text_field, keep_fields=["lang"]))
    for batch in reader.read(Task(item.source, "jsonl", item.path)):
        if batch.rejects is not None:
            for reason in batch.rejects["reject_reason"].to_pylist():
                counts.skipped[reason] += 1
        docs = batch.docs
        if docs is None or docs.num_rows == 0:
            continue
        yield pa.Table.from_arrays([docs["id"], docs["source"], docs["lang"], docs["text"]], schema=DOC_SCHEMA)


def decode_text(data: bytes) -> str | None:
    """Bytes of a text file -> str: UTF-8 (BOM stripped), else the detected encoding, else None."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    if best is None or best.encoding is None:
        return None
    try:
        return data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _txt_batches(item: InputFile, counts: ReadCounts, doc_chars: int | None) -> Iterator[pa.Table]:
    from curate.readers.fileio import open_binary

    with open_binary(item.path) as f:
        data = f.read()
    text = decode_text(data)
    if text is None:
        counts.skipped["undecodable-text"] += 1
        return
    text = text.replace("\r\n", "\n")
    pieces, start = [], 0
    while start < len(text):
        end = start + doc_chars if doc_chars else len(text)
        if end < len(text):
            cut = text.rfind("\n\n", start, end)
            end = cut + 2 if cut > start else end
        pieces.append(text[start:end])
        start = end
    pieces = pieces or [""]
    ids = [doc_id(item.source, f"{item.path}:{i}" if len(pieces) > 1 else item.path) for i in range(len(pieces))]
    n = len(pieces)
    yield pa.Table.from_arrays([pa.array(ids, pa.string()), pa.array([item.source] * n, pa.string()),
                                pa.nulls(n, pa.string()), pa.array(pieces, pa.string())], schema=DOC_SCHEMA)


def estimated_text_bytes(item: InputFile, text_field: str = "text") -> int:
    """Text bytes in a file, from Parquet metadata or the file size (cheap; no full read)."""
    if item.format in ("curated", "parquet"):
        try:
            meta = _parquet(item.path).metadata
        except Exception:
            return _size(item.path)
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        if text_field not in names:
            return _size(item.path)
        col = names.index(text_field)
        return sum(meta.row_group(g).column(col).total_uncompressed_size for g in range(meta.num_row_groups))
    size = _size(item.path)
    return size * 3 if item.path.endswith(".gz") else size


def parquet_row_ranges(item: InputFile, task_bytes: float, text_field: str = "text") -> list[tuple[int, int]] | None:
    """Cut a Parquet file holding more than ``task_bytes`` of text into row ranges of about that much text,
    so that one big file keeps every worker busy; ``None``: the file is one task (small, unreadable, or one
    row). The cut depends on the file's metadata and ``task_bytes`` only, never on the worker count, so a
    resumed run cuts the same ranges and finds their done markers.

    Ranges end at row-group boundaries; a row group holding more than ``task_bytes`` (writers' default is
    a million rows) is cut into equal row counts, each part reading that group and keeping its rows.
    """
    if item.format not in ("curated", "parquet"):
        return None
    try:
        meta = _parquet(item.path).metadata
    except Exception:  # unreadable: its one task says why
        return None
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if text_field not in names or meta.num_rows < 2:
        return None
    col = names.index(text_field)
    groups = [(meta.row_group(g).num_rows, meta.row_group(g).column(col).total_uncompressed_size)
              for g in range(meta.num_row_groups)]
    total = sum(size for _, size in groups)
    if total <= task_bytes:
        return None
    target = total / -(-total // task_bytes)  # as many parts as needed, of equal size
    units, start = [], 0  # (first row, end row, bytes): whole groups, big groups in equal parts
    for rows, size in groups:
        parts = max(1, min(rows, round(size / target))) if size > target else 1
        for k in range(parts):
            units.append((start + rows * k // parts, start + rows * (k + 1) // parts, size / parts))
        start += rows
    ranges, first, acc = [], 0, 0.0
    for lo, hi, size in units:
        if acc and acc + size / 2 > target:
            ranges.append((first, lo))
            first, acc = lo, 0.0
        acc += size
    ranges.append((first, start))
    ranges = [(lo, hi) for lo, hi in ranges if hi > lo]
    return ranges if len(ranges) > 1 else None


def source_bytes(files: list[InputFile], text_field: str = "text") -> dict[str, int]:
    """Estimated text bytes per source, without reading any text.

    A curated file's row groups give their text bytes in the Parquet metadata;
    each group's bytes are shared among its rows' sources by row count (only the
    small ``source`` column is read).
    """
    totals: Counter = Counter()
    for item in files:
        if item.format != "curated":
            totals[item.source] += estimated_text_bytes(item, text_field)
            continue
        try:
            parquet = _parquet(item.path)
            meta = parquet.metadata
            names = [meta.schema.column(i).name for i in range(meta.num_columns)]
            text_col = names.index(text_field)
            for group in range(meta.num_row_groups):
                text = meta.row_group(group).column(text_col).total_uncompressed_size
                sources = parquet.read_row_group(group, columns=["source"])["source"]
                counts = pc.value_counts(sources)
                rows = max(len(sources), 1)
                for entry in counts.to_pylist():
                    totals[entry["values"]] += text * entry["counts"] // rows
        except (ValueError, OSError, pa.ArrowException) as err:
            raise InputError(f"{item.path}: cannot read the source column or text size ({err})") from None
    return dict(totals)


def unit_hash(ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per document id, fixed for a seed: sampling that reruns reproduce."""
    digests = [xxhash.xxh64_intdigest((i or "").encode("utf-8", "surrogatepass"), seed=seed) for i in ids.to_pylist()]
    return np.array(digests, dtype=np.float64) / 2.0**64


def sample_documents(files: list[InputFile], *, sample_bytes: int, heldout_fraction: float, seed: int,
                     source_weights: dict[str, float] | None = None, lang_prefix: str | None = None,
                     heldout_bytes: int = 4 << 20, counts: ReadCounts | None = None,
                     text_field: str = "text") -> tuple[Iterator[pa.Table], list[pa.Table]]:
    """Split the corpus into a training sample (streamed) and a held-out slice (collected).

    Each document falls in the held-out slice when its id hashes below
    ``heldout_fraction`` (capped at ``heldout_bytes`` per source and language);
    the rest is sampled per source at the rate that gives each source its share
    of ``sample_bytes``: its ``source_weights`` entry (normalized), or its share
    of the corpus bytes when no weights are given. ``lang_prefix`` keeps only
    the curated documents whose ``lang`` starts with it: documents without a
    ``lang`` (code, inputs langid did not label) are left out, and
    ``counts.langs`` tallies every curated document's language so that an empty
    selection can say what there was. Plain inputs are taken whole.
    """
    sizes = source_bytes(files)
    weights = dict(source_weights or {})
    unknown = sorted(set(weights) - set(sizes))
    if unknown:
        raise InputError(f"source weight for {unknown[0]!r}, which is not in the input (sources: {', '.join(sorted(sizes))})")
    if weights:
        total_weight = sum(weights.values())
        shares = {s: weights.get(s, 0.0) / total_weight for s in sizes}
    else:
        total = sum(sizes.values()) or 1
        shares = {s: b / total for s, b in sizes.items()}
    rates = {s: min(1.0, shares[s] * sample_bytes / max(sizes[s] * (1 - heldout_fraction), 1)) for s in sizes}
    budgets = {s: shares[s] * sample_bytes for s in sizes}
    heldout: list[pa.Table] = []
    heldout_used: Counter = Counter()

    def train_batches() -> Iterator[pa.Table]:
        taken: Counter = Counter()
        for item in files:
            for table in read_documents(item, counts, text_field):
                if lang_prefix is not None and item.format == "curated":
                    lang = table["lang"]
                    if counts is not None:
                        counts.langs.update(lang.fill_null("none").to_pylist())
                    keep = pc.starts_with(lang.fill_null(""), lang_prefix).fill_null(False)
                    table = table.filter(keep)
                    if table.num_rows == 0:
                        continue
                u = unit_hash(table["id"], seed)
                is_heldout = u < heldout_fraction
                if is_heldout.any():
                    _collect_heldout(table.filter(pa.array(is_heldout)), heldout, heldout_used, heldout_bytes)
                # a second hash draw, independent of the held-out one, decides the training sample
                v = unit_hash(table["id"], seed + 1)
                rate = np.array([rates.get(s, 0.0) for s in table["source"].to_pylist()])
                chosen = (~is_heldout) & (v < rate)
                if not chosen.any():
                    continue
                sample = table.filter(pa.array(chosen))
                lengths = pc.binary_length(sample["text"]).to_numpy(zero_copy_only=False)
                keep = np.ones(sample.num_rows, dtype=bool)
                for i, (src, n) in enumerate(zip(sample["source"].to_pylist(), lengths.tolist())):
                    if taken[src] >= budgets[src]:
                        keep[i] = False
                    else:
                        taken[src] += n
                if keep.any():
                    yield sample.filter(pa.array(keep))

    return train_batches(), heldout


def _collect_heldout(table: pa.Table, heldout: list[pa.Table], used: Counter, cap: int) -> None:
    lengths = pc.binary_length(table["text"]).to_pylist()
    keep = []
    for src, lang, n in zip(table["source"].to_pylist(), table["lang"].to_pylist(), lengths):
        key = (src, lang)
        keep.append(used[key] < cap)
        if keep[-1]:
            used[key] += n
    if any(keep):
        heldout.append(table.filter(pa.array(keep)))


def training_lines(batches: Iterator[pa.Table], max_bytes: int) -> Iterator[str]:
    """Documents -> the lines SentencePiece trains on: non-blank lines, long ones cut to ``max_bytes``."""
    for table in batches:
        for text in table["text"].to_pylist():
            for line in text.split("\n"):
                if not line.strip():
                    continue
                if len(line) * 4 <= max_bytes or len(line.encode("utf-8")) <= max_bytes:
                    yield line
                    continue
                step = max_bytes // 4
                for start in range(0, len(line), step):
                    yield line[start:start + step]
