"""Web archives: WARC (plain, per-record gzip, whole-file gzip), WET and ARC.

Two parsers, chosen per file (benchmarks/warc_readers.py, docs/extract.md):
FastWARC (~3x warcio) for per-record gzip, Common Crawl's layout, with each
record's gzip trailer checked against the record it returned (FastWARC runs
silently past a damaged member); a lenient parser of our own for plain and
whole-file gzip WARC, for ARC, and for the rest of a file where FastWARC met
damage. It checks every record boundary, resyncs on the next ``WARC/1.x``
line or gzip header, and reads a truncated gzip up to its last good byte.

What a page costs before extraction is paid here, once: a record that later
stages would drop anyway (revisits, requests, non-HTML, non-2xx, blocklisted
hosts) is skipped and counted by reason, without decoding its payload. Corrupt
input becomes a counted reject and reading goes on with the next record: a
payload shorter than its Content-Length (a truncated gzip member: FastWARC and
warcio both return it short without an error), malformed HTTP, bad chunking,
an undecodable or oversized Content-Encoding, unreadable bytes after the last
record.
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import pyarrow as pa

from curate.readers import ReadBatch, Reader, Task
from curate.readers.fileio import (BadEncoding, TooLarge, dechunk, decode_html, header_charset, inflate,
                                   looks_like_html, open_lenient, open_raw, input_size, LenientGzip,
                                   printable)
from curate.readers.sizing import estimated_bytes, owns, part_ranges
from curate.remote import is_remote
from curate.schema import CORE_FIELDS, doc_id

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/xhtml", "text/xhtml"})
#: Content-Types that say nothing: the payload is sniffed
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown",
                           "unknown/unknown", "text/plain", "application/x-unknown-content-type", "text/unknown"})
#: A batch is cut at this many characters of html/text too (Arrow string arrays hold at most 2 GiB).
BATCH_CHARS = 64 << 20
#: Rejected rows keep at most this much of their payload, for inspection.
REJECT_PREVIEW_CHARS = 20_000

WARC_SCHEMA = pa.schema([
    *CORE_FIELDS,
    pa.field("html", pa.string()),
    pa.field("fetch_time", pa.timestamp("ms", tz="UTC")),  # Parquet has no seconds unit: ms is what lands
    pa.field("warc_record_id", pa.string()),
    pa.field("content_type", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("charset", pa.string()),
    pa.field("decode_errors", pa.int32()),
])
WET_SCHEMA = pa.schema([f for f in WARC_SCHEMA if f.name not in ("html", "charset", "decode_errors")]
                       + [pa.field("cc_language", pa.string())])


@dataclass
class WarcOptions:
    max_record_bytes: int = 16 << 20
    """Largest payload read, compressed and decompressed (Common Crawl truncates at 1 MiB); bigger: reject."""
    keep_non_2xx: bool = False
    """Keep responses whose HTTP status is not 2xx (error pages, redirects)."""
    sniff_html: bool = True
    """Sniff payloads with a missing or generic Content-Type (octet-stream, text/plain) for HTML."""
    url_blocklist: list[str] = field(default_factory=list)
    """Hosts whose pages are skipped before decoding (``example.com`` also blocks ``www.example.com``)."""

    def validate(self) -> None:
        _validate_common(self)


@dataclass
class WetOptions:
    max_record_bytes: int = 16 << 20
    """Largest record read; bigger: reject ``too-large``."""
    url_blocklist: list[str] = field(default_factory=list)
    """Hosts whose records are skipped (``example.com`` also blocks ``www.example.com``)."""

    def validate(self) -> None:
        _validate_common(self)


def _validate_common(options: "WarcOptions | WetOptions") -> None:
    if options.max_record_bytes < 1024:
        raise ValueError("max_record_bytes: must be at least 1024")
    # "Example.com", ".example.com" and "https://example.com/" all mean the host example.com
    options.url_blocklist = [entry.strip().lower().split("://")[-1].split("/")[0].lstrip(".")
                             for entry in options.url_blocklist if entry.strip()]


#: Skip reasons that stand for a whole record the WARC parsers dropped (the ARC parser counts its own).
PARSER_DROPPED_RECORDS = frozenset({"truncated-record-header", "bad-content-length", "garbage-between-records"})


@dataclass
class _Record:
    """One archive record, however it was parsed."""

    location: str        # where in the file: a byte offset (gzip: its member's compressed offset)
    kind: str            # response, resource, revisit, request, conversion, ... (ARC: response)
    url: str | None
    date: datetime | None
    record_id: str | None
    declared_length: int
    body: bytes | None    # None: not read (over the size cap)
    warc_type: str = ""   # WARC Content-Type of the block
    language: str | None = None
    http_required: bool = True  # a WARC response block must start with HTTP headers
    boundary_ok: bool = True     # the next record starts right after Content-Length bytes
    payload_type: str | None = None  # WARC-Identified-Payload-Type: the crawler's sniffed MIME type
    position: int = 0     # compressed byte position in the file: which part of a file read in parts owns it


class _Batches:
    """Collects rows of one task and cuts them into ``ReadBatch`` objects."""

    def __init__(self, schema: pa.Schema, rows: int):
        self.schema, self.rows = schema, rows
        self._reset()

    def _reset(self) -> None:
        self.bytes = 0
        self.docs = {name: [] for name in self.schema.names}
        self.rejects = {name: [] for name in self.schema.names + ["reject_reason"]}
        self.skipped: Counter = Counter()
        self.records = 0

    def add_doc(self, **values) -> None:
        self.bytes += len(values.get("html") or values.get("text") or "")
        for name, column in self.docs.items():
            column.append(values.get(name))

    def add_reject(self, reason: str, **values) -> None:
        self.bytes += len(values.get("html") or values.get("text") or "")
        for name, column in self.rejects.items():
            column.append(reason if name == "reject_reason" else values.get(name))

    def full(self) -> bool:
        return len(self.docs["id"]) + len(self.rejects["id"]) >= self.rows or self.bytes >= BATCH_CHARS

    def pending(self) -> bool:
        return bool(self.records or self.skipped or self.docs["id"] or self.rejects["id"])

    def take(self) -> ReadBatch:
        docs = pa.table(self.docs, schema=self.schema)
        rejects = None
        if self.rejects["id"]:
            rejects = pa.table(self.rejects, schema=self.schema.append(pa.field("reject_reason", pa.string())))
        # records the WARC parsers drop before the reader sees them still count as records read
        dropped = sum(n for reason, n in self.skipped.items() if reason in PARSER_DROPPED_RECORDS)
        batch = ReadBatch(docs=docs, rejects=rejects, skipped=self.skipped, records=self.records + dropped)
        self._reset()
        return batch


class WarcReader(Reader):
    """WARC ``response`` (and ``resource``) records with an HTML payload -> rows with an ``html`` column."""

    format = "warc"
    Options = WarcOptions
    suffixes = (".warc", ".warc.gz")
    schema = WARC_SCHEMA

    def tasks(self, paths: list[str], target_bytes: int, fanout_bytes: int | None = None) -> list[Task]:
        return _part_tasks(self, paths, fanout_bytes)

    def read(self, task: Task) -> Iterator[ReadBatch]:
        out = _Batches(self.schema, self.batch_rows)
        for record in _own_records(task, self._records(task.path, _parser_out(task, out))):
            out.records += 1
            self._handle(task, record, out)
            if out.full():
                yield out.take()
        if out.pending():
            yield out.take()

    # -- parsing ---------------------------------------------------------------------------------------------

    def _records(self, path: str, out: _Batches) -> Iterator[_Record]:
        if _is_arc(path):
            yield from _arc_records(path, self.options.max_record_bytes, out)
        else:
            yield from warc_records(path, self.options.max_record_bytes, out.skipped)

    # -- one record --------------------------------------------------------------------------------------------

    def _handle(self, task: Task, record: _Record, out: _Batches) -> None:
        if record.kind not in ("response", "resource"):
            out.skipped[f"record:{record.kind}"] += 1
            return
        if self.options.url_blocklist and _blocked(record.url, self.options.url_blocklist):
            out.skipped["url-blocked"] += 1
            return
        base = {"id": doc_id(self.source, f"{task.path}:{record.location}"), "source": self.source, "url": record.url,
                "path": printable(task.path), "fetch_time": record.date, "warc_record_id": record.record_id}
        if record.body is None:
            out.add_reject("too-large", **base)
            return
        parsed = _split_http(record.body) if record.kind == "response" else None
        cut = len(record.body) < record.declared_length or not record.boundary_ok
        if cut and not _http_complete(parsed):
            preview = record.body[:REJECT_PREVIEW_CHARS].decode("utf-8", "replace")
            out.add_reject("truncated-record", html=preview, **base)
            return
        if parsed is not None:
            status, headers, payload = parsed
        elif record.kind == "response" and record.http_required:
            preview = record.body[:REJECT_PREVIEW_CHARS].decode("utf-8", "replace")
            out.add_reject("bad-http-header", html=preview, **base)
            return
        else:  # resource records, and ARC captures of non-HTTP URLs, carry no HTTP headers
            status, headers, payload = None, {"content-type": record.warc_type}, record.body
        base["http_status"] = status
        if status is not None and not 200 <= status < 300 and not self.options.keep_non_2xx:
            out.skipped[f"http-status:{status // 100}xx"] += 1
            return
        content_type = headers.get("content-type", "").strip()
        base["content_type"] = content_type or None
        mime = content_type.split(";", 1)[0].strip().lower()
        if record.payload_type:  # the crawler sniffed the payload: trust it over a wrong Content-Type
            mime = record.payload_type.split(";", 1)[0].strip().lower()
        generic = mime in GENERIC_TYPES
        if mime not in HTML_TYPES and not (generic and self.options.sniff_html):
            out.skipped[f"non-html:{mime.split('/', 1)[0] or 'unknown'}"] += 1
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            try:
                payload = dechunk(payload)
            except BadEncoding:
                # crawlers often store the payload already de-chunked but keep the header
                if not looks_like_html(payload, strict=True):
                    out.add_reject("bad-chunking", html=payload[:REJECT_PREVIEW_CHARS].decode("utf-8", "replace"),
                                   **base)
                    return
        try:
            for encoding in reversed(headers.get("content-encoding", "").split(",")):
                payload = inflate(payload, encoding, self.options.max_record_bytes)
        except TooLarge:
            out.add_reject("decompression-bomb", **base)
            return
        except BadEncoding:
            out.add_reject("bad-content-encoding", **base)
            return
        if not looks_like_html(payload) and (generic or _binary(payload)):
            out.skipped["non-html:sniffed"] += 1
            return
        html, charset, errors = decode_html(payload, header_charset(content_type))
        out.add_doc(html=html, charset=charset, decode_errors=errors, **base)


class WetReader(Reader):
    """WET ``conversion`` records: Common Crawl's plain text, straight to ``text``."""

    format = "wet"
    Options = WetOptions
    schema = WET_SCHEMA
    suffixes = (".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz")

    def tasks(self, paths: list[str], target_bytes: int, fanout_bytes: int | None = None) -> list[Task]:
        return _part_tasks(self, paths, fanout_bytes)

    def read(self, task: Task) -> Iterator[ReadBatch]:
        out = _Batches(WET_SCHEMA, self.batch_rows)
        records = warc_records(task.path, self.options.max_record_bytes, _parser_out(task, out).skipped)
        for record in _own_records(task, records):
            out.records += 1
            if record.kind != "conversion":
                out.skipped[f"record:{record.kind}"] += 1
            elif self.options.url_blocklist and _blocked(record.url, self.options.url_blocklist):
                out.skipped["url-blocked"] += 1
            else:
                base = {"id": doc_id(self.source, f"{task.path}:{record.location}"), "source": self.source,
                        "url": record.url, "path": printable(task.path), "fetch_time": record.date,
                        "warc_record_id": record.record_id, "content_type": record.warc_type or None,
                        "cc_language": record.language}
                if record.body is None:
                    out.add_reject("too-large", **base)
                elif not record.boundary_ok or (len(record.body) < record.declared_length
                                                and not _counts_characters(record)):
                    out.add_reject("truncated-record", text=record.body.decode("utf-8", "replace"), **base)
                else:
                    out.add_doc(text=record.body.decode("utf-8", "replace"), **base)
            if out.full():
                yield out.take()
        if out.pending():
            yield out.take()


class ArcReader(WarcReader):
    """ARC v1/v2 (2008-2012 Common Crawl, Internet Archive): same rows as WARC."""

    format = "arc"
    suffixes = (".arc", ".arc.gz")

    def _records(self, path: str, out: _Batches) -> Iterator[_Record]:
        yield from _arc_records(path, self.options.max_record_bytes, out)


# -- one file in parts ------------------------------------------------------------------------------------------


def _part_tasks(reader: Reader, paths: list[str], fanout_bytes: int | None) -> list[Task]:
    """An archive cannot be entered in the middle (gzip; and a record boundary is only known by reading up
    to it): a large one is read whole by each of its parts, each keeping the records whose compressed
    position falls in its byte range (curate.readers.sizing). A remote file is not read in parts: each
    part would download it again."""
    tasks = []
    for path in paths:
        if is_remote(path):
            tasks.append(Task(reader.source, reader.format, path))
            continue
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        tasks += [Task(reader.source, reader.format, path, start, end)
                  for start, end in part_ranges(size, estimated_bytes(path, size), fanout_bytes)]
    return tasks


def _own_records(task: Task, records: Iterator[_Record]) -> Iterator[_Record]:
    """The records of this task's part; skipped ones are parsed but never decoded or extracted."""
    if task.start == 0 and task.end is None:
        yield from records
        return
    for record in records:
        if owns(record.position, task.start, task.end):
            yield record


def _parser_out(task: Task, out: _Batches) -> _Batches:
    """Where the parsers count what they drop for the whole file (broken headers, gzip resyncs, a
    fallback): the first part's batches; the other parts, which parse the same file, count them nowhere."""
    return out if task.start == 0 else _Batches(out.schema, out.rows)


# -- WARC -------------------------------------------------------------------------------------------------------


def warc_records(path: str, max_bytes: int, skipped: Counter) -> Iterator[_Record]:
    """FastWARC for per-record gzip (Common Crawl's layout: a wrong length cannot run into the next
    record), the lenient parser for plain and whole-file gzip WARC, where FastWARC silently drops
    records after a Content-Length that is wrong or counts characters."""
    if _per_record_gzip(path):
        return _fastwarc_records(path, max_bytes, skipped)
    return _lenient_warc_records(path, max_bytes, skipped)


def _per_record_gzip(path: str) -> bool:
    """Each record its own gzip member (the first member holds a single record)."""
    with open_raw(path) as f:
        head = f.read(1 << 16)
    if not head.startswith(b"\x1f\x8b"):
        return False
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        first = decoder.decompress(head, 1 << 20)
    except zlib.error:
        return False
    return first.count(b"WARC/1.") <= 1


def _fastwarc_records(path: str, max_bytes: int, skipped: Counter) -> Iterator[_Record]:
    """FastWARC, with each record's gzip member checked to be whole before the record is passed on.

    A damaged member can make deflate run on into the next members without an error, and FastWARC
    then drops the records after it silently; so each record's compressed span (its offset to the
    next record's) must end with the gzip trailer of exactly that record (8 bytes read per record),
    else it must inflate to one complete member. On any damage the lenient parser reads the file
    too and yields the records FastWARC missed.
    """
    from fastwarc.warc import ArchiveIterator

    size = input_size(path)
    seen: set[str] = set()
    damaged = False
    pending: _Record | None = None
    pending_size = 0  # bytes the pending record takes uncompressed: what its gzip trailer must say
    with open_raw(path) as raw, open_raw(path) as check:
        try:
            for rec in ArchiveIterator(raw, parse_http=False, quirks_mode=True):
                if pending is not None:
                    if not _trailer_matches(check, rec.stream_pos, pending_size):
                        damaged |= _mark_if_damaged(pending, check, int(pending.location), rec.stream_pos)
                    yield pending
                headers = rec.headers
                declared = rec.content_length
                pending_size = (len(headers.status_line) + 4 + declared + 4
                                + sum(len(name) + len(value) + 4 for name, value in headers.astuples()))
                body = rec.reader.read(max_bytes + 1) if declared <= max_bytes else None
                if body is not None and len(body) > max_bytes:
                    body = None
                seen.add(str(rec.stream_pos))
                if (headers.get("Content-Length") is None or not headers.get("WARC-Type")
                        or body is not None and not _plausible_block(headers, body)):
                    damaged = True
                pending = _Record(
                    location=str(rec.stream_pos),
                    position=rec.stream_pos,
                    kind=(headers.get("WARC-Type") or "unknown").strip().lower(),
                    url=_clean_uri(headers.get("WARC-Target-URI")),
                    date=_parse_date(headers.get("WARC-Date")),
                    record_id=headers.get("WARC-Record-ID"),
                    declared_length=declared,
                    body=body,
                    warc_type=(headers.get("Content-Type") or "").strip().lower(),
                    language=headers.get("WARC-Identified-Content-Language"),
                    http_required=_is_http_block(headers.get("Content-Type")),
                    payload_type=headers.get("WARC-Identified-Payload-Type"),
                )
            complete = raw.tell() >= size
        except OSError:  # a corrupt member or garbage: FastWARC stops here
            complete = False
        if pending is not None:
            if not complete or not _trailer_matches(check, size, pending_size):
                damaged |= _mark_if_damaged(pending, check, int(pending.location), size if complete else None)
            yield pending
    if damaged or not complete:  # the lenient parser resyncs past the damage; records already read are not repeated
        skipped["fastwarc-fallback"] += 1
        for record in _lenient_warc_records(path, max_bytes, skipped):
            if record.location not in seen:
                yield record


def _trailer_matches(check, end: int, record_size: int) -> bool:
    """The gzip trailer just before ``end`` gives the size of the record FastWARC read (8 bytes read,
    nothing inflated): the span holds exactly that one member. Non-canonical header spacing fails this
    harmlessly (the full check below runs)."""
    if end < 8:
        return False
    check.seek(end - 4)
    trailer = check.read(4)
    return len(trailer) == 4 and int.from_bytes(trailer, "little") == record_size % (1 << 32)


def _mark_if_damaged(record: _Record, check, start: int, end: int | None) -> bool:
    """Check the gzip member of ``record`` at ``start``; True if the file is damaged around it.

    A member that does not inflate whole flags the record (it becomes a ``truncated-record``
    reject). A whole member that does not end where the next record starts (``end``) means bytes
    or records between them that FastWARC skipped: the record is good, the file needs the fallback.
    """
    if record.body is not None and len(record.body) < record.declared_length:
        record.boundary_ok = False
        return True
    check.seek(start)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    consumed = 0
    block = min(end - start, 1 << 22) if end is not None and end > start else 1 << 16
    try:
        while not decoder.eof:
            data = decoder.unconsumed_tail or check.read(block)
            if not data:
                break
            if not decoder.unconsumed_tail:
                consumed += len(data)
            decoder.decompress(data, 1 << 22)
    except zlib.error:
        record.boundary_ok = False
        return True
    if not decoder.eof:
        record.boundary_ok = False
        return True
    member_end = start + consumed - len(decoder.unused_data)
    if end is None:
        return True
    if member_end == end:
        return False
    check.seek(member_end)
    return bool(check.read(end - member_end).strip(b"\x00"))  # zero padding between members is fine


class _Source:
    """A binary stream with line reads, push-back and an offset (of the decompressed bytes)."""

    def __init__(self, stream):
        self.stream, self.pending, self.offset = stream, b"", 0

    def read(self, n: int) -> bytes:
        data = b""
        if self.pending:
            data, self.pending = self.pending[:n], self.pending[n:]
        if len(data) < n:
            data += self.stream.read(n - len(data))
        self.offset += len(data)
        return data

    def readline(self, limit: int = 1 << 16) -> bytes:
        if self.pending:
            cut = self.pending.find(b"\n", 0, limit)
            if cut >= 0:
                line, self.pending = self.pending[:cut + 1], self.pending[cut + 1:]
            else:
                line, self.pending = self.pending[:limit], self.pending[limit:]
                if len(line) < limit and not line.endswith(b"\n"):
                    line += self.stream.readline(limit - len(line))
        else:
            line = self.stream.readline(limit)
        self.offset += len(line)
        return line

    def unread(self, data: bytes) -> None:
        self.pending = data + self.pending
        self.offset -= len(data)


def _embedded_record(body: bytes) -> int:
    """Where a ``WARC/1.x`` header line starts inside ``body`` (-1: none), with or without a line break
    before it (a cut can remove that too); ``bytes.find`` is ~10x a regex here."""
    pos = body.find(b"WARC/1.")
    while pos >= 0:
        version, eol = body[pos + 7:pos + 8], body[pos + 8:pos + 9]
        if version in (b"0", b"1") and eol in (b"\r", b"\n", b""):
            while pos > 0 and body[pos - 1] in (10, 13):
                pos -= 1
            return pos
        pos = body.find(b"WARC/1.", pos + 1)
    return -1


def _lenient_warc_records(path: str, max_bytes: int, skipped: Counter) -> Iterator[_Record]:
    """Header lines, Content-Length bytes, blank lines; checks every record boundary.

    A record that runs into the next record's header (its Content-Length is too
    large, or the payload was cut) is returned short, so it is rejected as
    truncated, and parsing resumes at that header. Bytes between a record and
    the next header are either the rest of a text record whose Content-Length
    counts characters (kept) or garbage (counted).
    """
    with open_lenient(path) as stream:
        src = _Source(stream)
        try:
            pending_garbage = False
            while True:
                line = src.readline()
                if not line:
                    if pending_garbage:
                        skipped["garbage-between-records"] += 1
                    if isinstance(stream, LenientGzip):
                        if stream.resyncs:
                            skipped["gzip-resync"] += stream.resyncs
                        if stream.error == "truncated-gzip":
                            skipped["unreadable:truncated-gzip"] += 1
                    return
                if not line.strip():
                    continue
                if not line.startswith(b"WARC/"):
                    pending_garbage = True
                    resume = line.find(b"WARC/1.")
                    if resume > 0:  # garbage without a line break before the next header
                        src.unread(line[resume:])
                    continue
                if pending_garbage:
                    skipped["garbage-between-records"] += 1
                    pending_garbage = False
                start = src.offset - len(line)
                location = stream.location(start) if isinstance(stream, LenientGzip) else str(start)
                headers: dict[str, str] | None = {}
                while True:
                    header = src.readline()
                    if not header.strip():
                        break
                    resume = header.find(b"WARC/1.")
                    if resume >= 0:  # the next record starts inside these headers: this one was cut short
                        src.unread(header[resume:])
                        headers = None
                        break
                    name, colon, value = header.decode("utf-8", "replace").partition(":")
                    if colon:
                        headers[name.strip().lower()] = value.strip()
                if headers is None:
                    skipped["truncated-record-header"] += 1
                    continue
                length_text = headers.get("content-length", "")
                if not length_text.isdigit():
                    skipped["bad-content-length"] += 1
                    continue
                declared = int(length_text)
                boundary_ok = True
                body: bytes | None
                if declared > max_bytes:
                    body, remaining = None, declared
                    while remaining > 0 and (chunk := src.read(min(remaining, 1 << 20))):
                        remaining -= len(chunk)
                else:
                    body = src.read(declared)
                    peek = src.readline()
                    src.unread(peek)
                    embedded = _embedded_record(body + peek)  # a header can straddle the end of the body
                    if 0 <= embedded < len(body):  # ran into the next record: this one is cut short
                        src.unread(body[embedded:])
                        body = body[:embedded]
                    else:
                        body += _continuation(src, headers, body, declared)
                        boundary_ok = _at_boundary(src)
                record_type = headers.get("content-type", "")
                yield _Record(
                    location=location,
                    position=stream.compressed_position(start) if isinstance(stream, LenientGzip) else start,
                    kind=(headers.get("warc-type") or "unknown").strip().lower(),
                    url=_clean_uri(headers.get("warc-target-uri")),
                    date=_parse_date(headers.get("warc-date")),
                    record_id=headers.get("warc-record-id"),
                    declared_length=declared,
                    body=body,
                    warc_type=record_type.strip().lower(),
                    language=headers.get("warc-identified-content-language"),
                    http_required=_is_http_block(record_type),
                    boundary_ok=boundary_ok,
                    payload_type=headers.get("warc-identified-payload-type"),
                )
        except (EOFError, OSError, zlib.error) as err:  # truncated or corrupt gzip: the rest is unreadable
            skipped[f"unreadable:{type(err).__name__}"] += 1


def _at_boundary(src: _Source) -> bool:
    """After a record: blank lines, then the next header or the end of the file."""
    line = src.readline()
    src.unread(line)
    return not line or not line.strip() or line.startswith(b"WARC/")


def _continuation(src: _Source, headers: dict[str, str], body: bytes, declared: int) -> bytes:
    """The rest of a text record whose Content-Length counts characters, else nothing (left for the caller)."""
    if not headers.get("content-type", "").startswith("text/"):
        return b""
    extra = []
    while True:
        line = src.readline()
        if not line or line.startswith(b"WARC/1."):
            src.unread(line)
            break
        extra.append(line)
    tail = b"".join(extra)
    text = (body + tail).rstrip(b"\r\n").decode("utf-8", "replace")
    if tail.strip() and len(text) <= declared + 2:
        return tail.rstrip(b"\r\n")
    src.unread(tail)
    return b""


def _is_http_block(content_type: str | None) -> bool:
    """A response block is HTTP unless its Content-Type says otherwise (Wayback exports store bare HTML)."""
    content_type = (content_type or "").strip().lower()
    return not content_type or content_type.startswith("application/http")


def _plausible_block(headers, body: bytes) -> bool:
    """An HTTP block starts like HTTP (a response line, or a request method)."""
    content_type = (headers.get("Content-Type") or "").lower()
    if not content_type.startswith("application/http"):
        return True
    start = body[:16]
    return start.startswith(b"HTTP/") or start.split(b" ", 1)[0].isupper()


def _counts_characters(record: _Record) -> bool:
    """cc_net-style WET whose Content-Length counts characters, not bytes: not a truncation."""
    return len(record.body.decode("utf-8", "replace")) >= record.declared_length  # type: ignore[union-attr]


# -- ARC ---------------------------------------------------------------------------------------------------------

#: the start of an ARC header line (``URL IP DATE ...``); found inside a payload, it means the payload was cut
_ARC_HEADER = re.compile(rb"\n(?:[a-zA-Z][a-zA-Z0-9+.-]*://\S+|filedesc:\S+) \S+ \d{14}")


def _arc_records(path: str, max_bytes: int, out: _Batches) -> Iterator[_Record]:
    """A lenient ARC parser: ``URL IP DATE MIME [...] LENGTH`` then LENGTH bytes; resyncs after garbage.

    A payload that contains the next header line (its length is wrong, or bytes were lost) is cut
    there and rejected as truncated; the next record is still read.
    """
    with open_lenient(path) as stream:
        src = _Source(stream)
        try:
            while True:
                line = src.readline()
                if not line:
                    if isinstance(stream, LenientGzip):
                        if stream.resyncs:
                            out.skipped["gzip-resync"] += stream.resyncs
                        if stream.error == "truncated-gzip":
                            out.skipped["unreadable:truncated-gzip"] += 1
                    return
                start = src.offset - len(line)
                if not line.strip():
                    continue
                fields = line.split()
                named = b"://" in fields[0] or fields[0].startswith(b"filedesc:") if fields else False
                if len(fields) < 5 or not fields[-1].isdigit() or not named:
                    out.records += 1
                    out.skipped["arc:bad-header-line"] += 1
                    continue
                length = int(fields[-1])
                boundary_ok = True
                if length > max_bytes:
                    body = None
                    remaining = length
                    while remaining > 0 and (chunk := src.read(min(remaining, 1 << 20))):
                        remaining -= len(chunk)
                else:
                    body = src.read(length)
                    peek = src.readline()
                    src.unread(peek)
                    window = b"\n" + body + peek
                    embedded = _ARC_HEADER.search(window, 1)
                    if embedded is not None and embedded.start() < len(body):  # ran into the next record
                        cut = embedded.start()  # in ``body`` coordinates (window has one extra byte in front)
                        src.unread(body[cut:])
                        body, boundary_ok = body[:cut], False
                    elif peek.strip() and not _ARC_HEADER.match(b"\n" + peek):
                        boundary_ok = False  # followed by something that is not the next header
                url = fields[0].decode("utf-8", "replace")
                yield _Record(
                    location=stream.location(start) if isinstance(stream, LenientGzip) else str(start),
                    position=stream.compressed_position(start) if isinstance(stream, LenientGzip) else start,
                    kind="filedesc" if url.startswith("filedesc:") else "response",
                    url=url,
                    date=_arc_date(fields[1:-1]),
                    record_id=None,
                    declared_length=length,
                    body=body,
                    warc_type=fields[3].decode("latin-1").lower(),
                    http_required=False,
                    boundary_ok=boundary_ok,
                )
        except (EOFError, OSError, zlib.error) as err:
            out.records += 1
            out.skipped[f"unreadable:{type(err).__name__}"] += 1


def _arc_date(fields: list[bytes]) -> datetime | None:
    """The first 14-digit field (``YYYYmmddHHMMSS``); longer stamps keep their first 14 digits."""
    for value in fields:
        if len(value) >= 14 and value[:14].isdigit():
            try:
                return datetime.strptime(value[:14].decode(), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
            except ValueError:
                return None
    return None


def _is_arc(path: str) -> bool:
    with open_lenient(path) as f:
        return f.read(11) == b"filedesc://"


# -- helpers -----------------------------------------------------------------------------------------------------


def _split_http(block: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """``HTTP/1.1 200 OK`` + headers + payload; None when it is not an HTTP response."""
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0 or block.find(b"\n\n", 0, end) >= 0:
        alt = block.find(b"\n\n")
        if alt >= 0:
            end, sep = alt, 2
    if end < 0:
        if block.startswith(b"HTTP/") and len(block) < 65536:  # headers only, no payload
            end, sep = len(block), 0
        else:
            return None
    lines = block[:end].decode("latin-1").splitlines()
    if not lines:
        return None
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].upper().startswith("HTTP/") or not parts[1].isdigit():
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            repeated = key in headers and key != "content-type"
            headers[key] = f"{headers[key]}, {value.strip()}" if repeated else value.strip()
    return int(parts[1]), headers, block[end + sep:]


def _http_complete(parsed: tuple[int, dict[str, str], bytes] | None) -> bool:
    """A record whose WARC length is wrong still holds its whole page if the HTTP Content-Length says so."""
    if parsed is None:
        return False
    _, headers, payload = parsed
    length = headers.get("content-length", "")
    return length.isdigit() and "chunked" not in headers.get("transfer-encoding", "").lower() \
        and len(payload) >= int(length)


def _binary(payload: bytes) -> bool:
    head = payload[:1024]
    return b"\x00" in head or head.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04"))


def _clean_uri(uri: str | None) -> str | None:
    if uri is None:
        return None
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1].strip()
    return uri or None


def _parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _blocked(url: str | None, blocklist: list[str]) -> bool:
    if not url:
        return False
    host = url.split("://", 1)[-1].split("/", 1)[0].split("@")[-1].split(":")[0].lower()
    return any(host == b or host.endswith("." + b) for b in blocklist)
