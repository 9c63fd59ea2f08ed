"""The document schema shared by every reader, stage and writer.

Every document is one row of an Arrow table. Readers produce the core columns;
stages append signal columns (``lang``, ``quality_*``, ``dup_*`` ...) and never
remove the core ones. A rejected document keeps every column it had when it was
dropped, plus ``reject_stage`` and ``reject_reason``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ID = "id"
GIVEN_ID = "given_id"
SOURCE = "source"
TEXT = "text"
URL = "url"
PATH = "path"
REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"

#: Columns every document has, in this order, whatever its reader.
CORE_FIELDS = [
    pa.field(ID, pa.string(), nullable=False),
    pa.field(SOURCE, pa.string(), nullable=False),
    pa.field(TEXT, pa.string()),
    pa.field(URL, pa.string()),
    pa.field(PATH, pa.string()),
]
CORE_SCHEMA = pa.schema(CORE_FIELDS)
REJECT_FIELDS = [pa.field(REJECT_STAGE, pa.string()), pa.field(REJECT_REASON, pa.string())]


def doc_id(source: str, location: str) -> str:
    """A stable id from where a document came from: reruns give the same id.

    ``location`` is whatever pins the document down inside its input: a file path
    plus a byte offset for WARC records, a line number for JSONL, a member path
    inside a code archive.
    """
    digest = hashlib.blake2b(f"{source}\x00{location}".encode("utf-8", "surrogatepass"), digest_size=10)
    return digest.hexdigest()


def text_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of the documents: ``text``, or ``html`` where text is not extracted yet."""
    if table.num_rows == 0:
        return 0
    total = 0
    if TEXT in table.column_names:
        total += int(pc.sum(pc.binary_length(table[TEXT])).as_py() or 0)
    if "html" in table.column_names:
        html = table["html"]
        if TEXT in table.column_names:
            html = pc.if_else(pc.is_null(table[TEXT]), html, pa.scalar(None, html.type))
        total += int(pc.sum(pc.binary_length(html)).as_py() or 0)
    return total


def conform(table: pa.Table) -> pa.Table:
    """Put the core columns first (adding missing ones as nulls), keep the rest in order."""
    columns, fields = [], []
    for field in CORE_FIELDS:
        if field.name in table.column_names:
            column = table[field.name]
            if column.type != field.type:
                column = column.cast(field.type)
        else:
            column = pa.nulls(table.num_rows, field.type)
        columns.append(column)
        fields.append(pa.field(field.name, field.type))
    for name in table.column_names:
        if name not in CORE_SCHEMA.names:
            columns.append(table[name])
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def with_reject(table: pa.Table, stage: str, reasons: pa.Array | list[str]) -> pa.Table:
    """Attach ``reject_stage`` / ``reject_reason`` to rows that are being dropped."""
    if REJECT_STAGE in table.column_names:
        table = table.drop_columns([REJECT_STAGE, REJECT_REASON])
    reasons = pa.array(reasons, pa.string()) if not isinstance(reasons, (pa.Array, pa.ChunkedArray)) else reasons
    table = table.append_column(REJECT_STAGE, pa.array([stage] * table.num_rows, pa.string()))
    return table.append_column(REJECT_REASON, reasons)


# ---------------------------------------------------------------- UTF-8 at the border

def _holds_strings(tp: pa.DataType) -> bool:
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        return True
    if pa.types.is_struct(tp):
        return any(_holds_strings(tp.field(i).type) for i in range(tp.num_fields))
    if pa.types.is_list(tp) or pa.types.is_large_list(tp) or pa.types.is_fixed_size_list(tp):
        return _holds_strings(tp.value_type)
    if pa.types.is_map(tp):
        return _holds_strings(tp.key_type) or _holds_strings(tp.item_type)
    return False


def _is_flat_string(tp: pa.DataType) -> bool:
    return pa.types.is_string(tp) or pa.types.is_large_string(tp)


def _invalid_rows(column: pa.ChunkedArray) -> np.ndarray:
    """A boolean mask of the rows of ``column`` holding a string that is not valid UTF-8."""
    if _is_flat_string(column.type):
        binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
        values = pa.chunked_array([c.view(binary) for c in column.chunks], binary).to_pylist()
        return np.fromiter((v is not None and not _decodes(v) for v in values), bool, count=len(values))
    mask = np.zeros(len(column), bool)
    for i in range(len(column)):
        try:
            column.slice(i, 1).validate(full=True)
        except pa.ArrowInvalid:
            mask[i] = True
    return mask


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def invalid_utf8(table: pa.Table) -> dict[str, np.ndarray]:
    """Per column, the rows whose strings are not valid UTF-8 (only columns that have such rows).

    Arrow trusts the bytes it is handed (the JSON and Parquet readers do not check them), but DuckDB
    refuses to read a file that holds one invalid string: every query on the view would fail. A full
    validation pass is cheap; the per-row search runs only when it fails.
    """
    found = {}
    for name in table.column_names:
        column = table[name]
        if not _holds_strings(column.type):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            found[name] = _invalid_rows(column)
    return found


def repair_utf8(table: pa.Table, bad: dict[str, np.ndarray] | None = None) -> pa.Table:
    """The table with every invalid string made valid: bytes that do not decode become U+FFFD
    (a nested value holding one becomes null), so that a quarantined row can still land and be read."""
    bad = invalid_utf8(table) if bad is None else bad
    for name, mask in bad.items():
        if not mask.any():
            continue
        column = table[name]
        if _is_flat_string(column.type):
            binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
            raw = pa.chunked_array([c.view(binary) for c in column.chunks], binary).to_pylist()
            fixed = pa.array([None if v is None else v.decode("utf-8", "replace") for v in raw], column.type)
        else:
            fixed = pc.if_else(pa.array(mask), pa.nulls(len(column), column.type), column.combine_chunks())
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), fixed)
    return table


def split_invalid_utf8(table: pa.Table) -> tuple[pa.Table, pa.Table | None, list[str]]:
    """(rows whose strings are all valid, the other rows repaired, a reason per other row: ``bad-utf8:<column>``)."""
    bad = invalid_utf8(table)
    if not bad:
        return table, None, []
    any_bad = np.zeros(table.num_rows, bool)
    reasons: list[str | None] = [None] * table.num_rows
    for name, mask in bad.items():
        for i in np.flatnonzero(mask & ~any_bad):
            reasons[i] = f"bad-utf8:{name}"
        any_bad |= mask
    rows = pa.array(any_bad)
    moved = repair_utf8(table.filter(rows), {name: mask[any_bad] for name, mask in bad.items()})
    return table.filter(pc.invert(rows)), moved, [r for r in reasons if r is not None]
