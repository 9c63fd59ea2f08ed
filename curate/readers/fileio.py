"""Opening input files and decoding the bytes of web pages."""

from __future__ import annotations

import bisect
import codecs
from array import array
import gzip
import os
import re
import zlib
from typing import BinaryIO


def printable(name: str) -> str:
    """A file name for a string column: names that are not UTF-8 arrive with surrogate escapes
    (which Arrow refuses); those bytes are shown as U+FFFD. Ids keep the exact name."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def open_raw(path: str) -> BinaryIO:
    """Open a local path or a URL (``s3://``, ``gs://``, ``hf://``, ``https://``: curate.remote) for
    reading bytes: remote files stream by range requests, a network error is retried from the same byte."""
    from curate.remote import is_remote, open_remote

    if is_remote(path):
        return open_remote(path)  # type: ignore[return-value]
    return open(path, "rb")


def input_size(path: str) -> int:
    """Bytes in a local or remote input file."""
    from curate.remote import is_remote, size

    return size(path) if is_remote(path) else os.path.getsize(path)


def is_local_dir(path: str) -> bool:
    """A local folder (remote inputs are expanded to their files when planned)."""
    from curate.remote import is_remote

    return not is_remote(path) and os.path.isdir(path)


def open_binary(path: str) -> BinaryIO:
    """Open ``path`` (local or a URL) for reading bytes, decompressing ``.gz`` transparently."""
    if path.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=open_raw(path), mode="rb")
        stream.myfileobj = stream.fileobj  # closed with the gzip stream, as gzip.open does with a name
        return stream  # type: ignore[return-value]
    return open_raw(path)


class TooLarge(ValueError):
    """Decompressed data would exceed the configured cap (a decompression bomb or a huge page)."""


class BadEncoding(ValueError):
    """A Content-Encoding or Transfer-Encoding that does not decode."""


def inflate(data: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo an HTTP ``Content-Encoding`` (gzip, deflate, br), never producing more than ``max_bytes``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        return data
    if encoding in ("gzip", "x-gzip"):
        if not data.startswith(b"\x1f\x8b"):
            return data  # archived already decoded (Common Crawl keeps the header)
        return _zlib_capped(data, 16 + zlib.MAX_WBITS, max_bytes)
    if encoding == "deflate":
        try:
            return _zlib_capped(data, zlib.MAX_WBITS, max_bytes)
        except BadEncoding:
            return _zlib_capped(data, -zlib.MAX_WBITS, max_bytes)
    if encoding == "br":
        import brotli

        try:
            out = brotli.Decompressor().process(data, output_buffer_limit=max_bytes + 1)
        except brotli.error as err:
            raise BadEncoding(f"br: {err}") from None
        if len(out) > max_bytes:
            raise TooLarge(f"br payload over {max_bytes} bytes")
        return out
    raise BadEncoding(f"unsupported content-encoding {encoding!r}")


def _zlib_capped(data: bytes, wbits: int, max_bytes: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, max_bytes + 1)
    except zlib.error as err:
        raise BadEncoding(str(err)) from None
    if len(out) > max_bytes:
        raise TooLarge(f"decompressed payload over {max_bytes} bytes")
    return out


def dechunk(data: bytes) -> bytes:
    """Undo HTTP chunked transfer-encoding; raises ``BadEncoding`` on a malformed chunk."""
    out, pos, size_total = [], 0, len(data)
    while True:
        eol = data.find(b"\n", pos)
        if eol < 0:
            raise BadEncoding("chunk size line missing")
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadEncoding(f"bad chunk size {size_text[:20]!r}") from None
        pos = eol + 1
        if size == 0:
            return b"".join(out)
        if pos + size > size_total:
            raise BadEncoding("chunk runs past the end of the payload")
        out.append(data[pos:pos + size])
        pos += size
        if data[pos:pos + 2] == b"\r\n":
            pos += 2
        elif data[pos:pos + 1] == b"\n":
            pos += 1
        else:
            raise BadEncoding("chunk not followed by a line break")


# charset labels whose bytes browsers actually decode with a superset
_SUPERSETS = {"ascii": "cp1252", "latin_1": "cp1252", "iso8859_1": "cp1252", "gb2312": "gb18030", "gbk": "gb18030",
              "euc_kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.I)
#: bytes of the page scanned for a meta charset and handed to detection
SNIFF_BYTES = 4096
DETECT_BYTES = 65536


def normalize_charset(label: str | None) -> str | None:
    """A Python codec name for a charset label, widened to what browsers decode; None if unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except (LookupError, ValueError):
        return None
    name = name.replace("-", "_")
    return _SUPERSETS.get(name, name)


def header_charset(content_type: str | None) -> str | None:
    match = _HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def meta_charset(html: bytes) -> str | None:
    match = _META_CHARSET.search(html[:SNIFF_BYTES])
    return match.group(1).decode("ascii", "replace") if match else None


def decode_html(body: bytes, declared: str | None) -> tuple[str, str, int]:
    """Decode a page to text: the HTTP charset, then the meta tag, then detection.

    Returns ``(text, charset used, undecodable byte sequences replaced)``. Charsets
    lie, so each is checked against the bytes: bytes that are valid UTF-8 are
    UTF-8 whatever is declared (the commonest lie is a latin-1 header on a UTF-8
    page, and legacy text is practically never valid UTF-8 by accident); a
    declared charset that fails to decode is passed over for the next one,
    then for charset-normalizer's guess; if all fail, the one with the fewest
    undecodable sequences wins and they are counted.
    """
    try:
        return body.decode("utf-8"), "utf_8", 0
    except UnicodeDecodeError:
        pass
    candidates = []
    for label in (declared, meta_charset(body)):
        name = normalize_charset(label)
        if name and name != "utf_8" and name not in candidates:
            candidates.append(name)
    for name in candidates:
        try:
            return body.decode(name), name, 0
        except (UnicodeDecodeError, LookupError):
            continue
    guessed = _detect(body)
    best = None
    for name in dict.fromkeys([*candidates, *([guessed] if guessed else []), "utf_8"]):
        try:
            text, errors = _decode_counting(body, name)
        except LookupError:
            continue
        if best is None or errors < best[2]:
            best = (text, name, errors)
        if errors == 0:
            break
    return best  # type: ignore[return-value]


def _decode_counting(body: bytes, name: str) -> tuple[str, int]:
    text = body.decode(name, "replace")
    already = body.count("\ufffd".encode(name, "ignore")) if name.startswith("utf") else 0
    return text, max(0, text.count("\ufffd") - already)


def _detect(body: bytes) -> str | None:
    from charset_normalizer import from_bytes

    match = from_bytes(body[:DETECT_BYTES]).best()
    return normalize_charset(match.encoding) if match is not None else None


_HTML_START = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*(?:<\?xml[^>]*>\s*)?(?:<!doctype\s+html|<html|<head|<body|<title|<meta|<div|<p[\s>])",
    re.I | re.S)


def looks_like_html(body: bytes, *, strict: bool = False) -> bool:
    """Sniff an HTML page from its first bytes (for a missing or generic Content-Type).

    ``strict``: the markup must start the payload (not merely appear in its first KiB).
    """
    head = body[:1024].lstrip(b"\xef\xbb\xbf")
    if b"\x00" in head:
        return False
    return bool(_HTML_START.match(head)) or not strict and b"<html" in head.lower()


class LenientGzip:
    """Multi-member gzip read as one stream that, unlike ``gzip.GzipFile``, never raises on bad data.

    A corrupt member, or garbage between members, is skipped: decoding resumes at the next gzip
    header after the start of the bad member (``resyncs`` counts these), so the members after the
    damage are still read. A file cut short returns every byte that decompressed and sets
    ``error = "truncated-gzip"``. ``location`` names a decompressed offset by its member's offset in
    the compressed file, so ids match FastWARC's record offsets for per-record gzip.
    """

    MAGIC = b"\x1f\x8b\x08"

    def __init__(self, raw: BinaryIO, block: int = 1 << 16):
        self.raw, self.block = raw, block
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.fed = False          # the current member has received input
        self.input = b""          # compressed bytes not yet given to a decoder
        self.raw_pos = 0          # compressed bytes read from ``raw``
        self.produced = 0         # decompressed bytes produced
        self.members = [(0, 0)]   # (decompressed start, compressed start) of each member
        self.buffer = bytearray()
        self.pos = 0              # read position in buffer
        self.error: str | None = None
        self.resyncs = 0
        self.done = False
        # (decompressed bytes produced, compressed bytes consumed) before each inflate call: where in the
        # file a decompressed byte came from, for the tasks that read one file in parts
        self.checkpoints_out = array("q")
        self.checkpoints_in = array("q")

    def _read_raw(self) -> bytes:
        data = self.raw.read(self.block)
        self.raw_pos += len(data)
        return data

    def _new_member(self) -> None:
        self.decoder, self.fed = zlib.decompressobj(16 + zlib.MAX_WBITS), False
        self.members.append((self.produced, self.raw_pos - len(self.input)))

    def _resync(self, start: int) -> None:
        """Continue at the first gzip header at or after compressed offset ``start``."""
        self.resyncs += 1
        self.raw.seek(start)
        self.raw_pos, tail = start, b""
        while True:
            data = self._read_raw()
            if not data:
                self.done, self.input = True, b""
                return
            window = tail + data
            found = window.find(self.MAGIC)
            if found >= 0:
                self.input = window[found:]
                self.buffer += b"\n"  # what follows a resync starts a new line for the record parsers
                self.produced += 1
                self._new_member()
                return
            tail = window[-2:]

    def _fill(self, wanted: int) -> None:
        while len(self.buffer) < wanted and not self.done:
            if not self.input:
                self.input = self._read_raw()
                if not self.input:
                    if self.fed and not self.decoder.eof:
                        # a member cut short; deflate may have run on into the members after it without an
                        # error, so look for a later member header before giving up
                        self.error = "truncated-gzip"
                        self._resync(self.members[-1][1] + 1)
                        continue
                    self.done = True
                    return
            if self.decoder.eof:  # the next member (or zero padding after the last one)
                if not self.input.strip(b"\x00"):
                    self.input = b""
                    continue
                self._new_member()
            if self.checkpoints_out and self.checkpoints_out[-1] == self.produced:
                self.checkpoints_in[-1] = self.raw_pos - len(self.input)  # the last call produced nothing
            else:
                self.checkpoints_out.append(self.produced)
                self.checkpoints_in.append(self.raw_pos - len(self.input))
            try:
                out = self.decoder.decompress(self.input, 1 << 20)
            except zlib.error:
                self.error = "corrupt-gzip"
                self._resync(self.members[-1][1] + 1)
                continue
            self.buffer += out
            self.produced += len(out)
            self.fed = True
            self.input = self.decoder.unused_data if self.decoder.eof else self.decoder.unconsumed_tail

    def location(self, offset: int) -> str:
        """``"<member offset>"`` for a member's first byte, else ``"<member offset>+<bytes into it>"``."""
        index = bisect.bisect_right(self.members, (offset, float("inf"))) - 1
        start, raw_start = self.members[max(index, 0)]
        return str(raw_start) if offset == start else f"{raw_start}+{offset - start}"

    def compressed_position(self, offset: int) -> int:
        """The compressed bytes consumed before decompressed byte ``offset`` was produced.

        Non-decreasing in ``offset``, and the same in every reading of the file (the inflate calls do
        not depend on how the caller reads): a file's records can be dealt to parts by compressed
        byte ranges, whose sizes are known before it is read. A record starting a gzip member gets
        that member's offset (FastWARC's ``stream_pos``); inside one large member, the position of
        the last inflate call before it (64 KiB of input at most).
        """
        index = bisect.bisect_right(self.checkpoints_out, offset) - 1
        return self.checkpoints_in[index] if index >= 0 else 0

    def _available(self) -> int:
        return len(self.buffer) - self.pos

    def _take(self, n: int) -> bytes:
        out = bytes(self.buffer[self.pos:self.pos + n])
        self.pos += n
        if self.pos > (1 << 20) and self.pos * 2 > len(self.buffer):  # compact now and then, not per read
            del self.buffer[:self.pos]
            self.pos = 0
        return out

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            self._fill(1 << 62)
            return self._take(self._available())
        if self._available() < n:
            self._fill(self.pos + n)
        return self._take(min(n, self._available()))

    def readline(self, limit: int = -1) -> bytes:
        limit = limit if limit >= 0 else 1 << 62
        start = self.pos
        while True:
            cut = self.buffer.find(b"\n", start, self.pos + limit)
            if cut >= 0:
                return self._take(cut + 1 - self.pos)
            if self._available() >= limit or self.done:
                return self._take(min(limit, self._available()))
            start = len(self.buffer)
            self._fill(len(self.buffer) + self.block)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()


def open_lenient(path: str):
    """Like ``open_binary`` (gzip by suffix or by magic bytes), but never raises on corrupt gzip data."""
    raw = open_raw(path)
    if raw.read(2) == b"\x1f\x8b" or path.endswith(".gz"):
        raw.seek(0)
        return LenientGzip(raw)
    raw.seek(0)
    return raw
