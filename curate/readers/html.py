"""Loose HTML files (``.html``, ``.htm``, ``.xhtml``, optionally ``.gz``): one document per file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from curate.readers import ReadBatch, Reader, Task
from curate.readers.fileio import decode_html, open_lenient, printable
from curate.schema import CORE_FIELDS, doc_id

HTML_SCHEMA = pa.schema([
    *CORE_FIELDS,
    pa.field("html", pa.string()),
    pa.field("charset", pa.string()),
    pa.field("decode_errors", pa.int32()),
])


@dataclass
class HtmlOptions:
    max_file_bytes: int = 16 << 20
    """Largest (decompressed) file read; bigger files are rejected as ``too-large``."""

    def validate(self) -> None:
        if self.max_file_bytes < 1024:
            raise ValueError("max_file_bytes: must be at least 1024")


class HtmlFileReader(Reader):
    format = "html"
    Options = HtmlOptions
    schema = HTML_SCHEMA
    suffixes = (".html", ".htm", ".xhtml", ".html.gz", ".htm.gz", ".xhtml.gz")

    def read(self, task: Task) -> Iterator[ReadBatch]:
        row = {"id": doc_id(self.source, task.path), "source": self.source, "path": printable(task.path)}
        reason = None
        try:
            with open_lenient(task.path) as f:
                body = f.read(self.options.max_file_bytes + 1)
                reason = getattr(f, "error", None)
        except OSError as err:
            body, reason = b"", f"unreadable:{type(err).__name__}"
        if reason is None and len(body) > self.options.max_file_bytes:
            reason, body = "too-large", b""
        if reason is None and b"\x00" in body[:1024]:
            reason = "binary"
        html, charset, errors = decode_html(body, None) if body else ("", None, 0)
        if reason is None and not html.strip():
            reason = "empty"
        table = pa.Table.from_pylist([{**row, "html": html, "charset": charset, "decode_errors": errors}],
                                     schema=HTML_SCHEMA)
        if reason is None:
            yield ReadBatch(docs=table, records=1)
        else:
            rejects = table.append_column("reject_reason", pa.array([reason], pa.string()))
            yield ReadBatch(docs=table.slice(0, 0), rejects=rejects, records=1)
