"""The document schema shared by every reader, stage and writer.

Every document is one row of an Arrow table. Readers produce the core columns;
stages append signal columns (``lang``, ``quality_*``, ``dup_*`` ...) and never
remove the core ones. A rejected document keeps every column it had when it was
dropped, plus ``reject_stage`` and ``reject_reason``.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

ID = "id"
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
