"""Plain-text books (``.txt``, ``.txt.gz``): one document per book, or per chunk.

The encoding is found by a cascade: a byte-order mark, then strict UTF-8 (which
also accepts ASCII), then UTF-8 with a few invalid bytes replaced (``utf-8-lossy``),
then the charset a Project Gutenberg header declares, then charset-normalizer's
detection. Single-byte Western guesses are settled between latin-1 and cp1252 by
the bytes 0x80-0x9F, which are printable only in cp1252.

Project Gutenberg wrappers (header, "Produced by" credits, footer, licence) are
cut at the ``*** START/END OF THE PROJECT GUTENBERG EBOOK ***`` markers and
their older variants; a file without markers is kept whole.
"""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from curate.readers import ReadBatch, Reader, Task
from curate.readers.fileio import open_binary, printable
from curate.schema import CORE_FIELDS, doc_id

SCHEMA = pa.schema(
    [
        *CORE_FIELDS,
        pa.field("title", pa.string()),
        pa.field("encoding", pa.string()),
        pa.field("chunk_index", pa.int32()),
    ]
)
REJECT_SCHEMA = SCHEMA.append(pa.field("reject_reason", pa.string()))

BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
SNIFF_BYTES = 64 << 10
WESTERN_SINGLE_BYTE = {"latin-1", "iso8859-1", "cp1252", "iso8859-15", "cp850", "mac-roman"}
C1_BYTES = re.compile(rb"[\x80-\x9f]")
ASCII_BYTES = bytes(range(128))
UTF8_LOSSY = "utf-8-lossy"

_MARKER_FLAGS = re.IGNORECASE | re.MULTILINE
START_MARKERS = re.compile(
    r"^[ \t]*\*{3,}[ \t]*START[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG.*$"
    r"|^[ \t]*\*{3,}[ \t]*START[ \t]+OF[ \t]+THE[ \t]+COPYRIGHTED[ \t]+PROJECT[ \t]+GUTENBERG.*$"
    r"|^[ \t]*\*END\*?[ \t]*THE[ \t]+SMALL[ \t]+PRINT.*$",
    _MARKER_FLAGS,
)
END_MARKERS = re.compile(
    r"^[ \t]*\*{3,}[ \t]*END[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG.*$"
    r"|^[ \t]*\*{3,}[ \t]*END[ \t]+OF[ \t]+THE[ \t]+COPYRIGHTED[ \t]+PROJECT[ \t]+GUTENBERG.*$"
    r"|^[ \t]*End[ \t]+of[ \t]+(?:the[ \t]+|this[ \t]+)?Project[ \t]+Gutenberg.*$"
    r"|^[ \t]*End[ \t]+of[ \t]+The[ \t]+Project[ \t]+Gutenberg[ \t]+Etext.*$",
    _MARKER_FLAGS,
)
CREDITS = re.compile(
    r"\A\s*(?:Produced by|This (?:e-?text|e-?book) was (?:produced|prepared) by|E-?text prepared by"
    r"|Transcribed (?:from|by))[^\n]*(?:\n[^\n]+)*\n*",
    re.IGNORECASE,
)
PG_HEADER = re.compile(r"Project\s+Gutenberg", re.IGNORECASE)
TITLE_LINE = re.compile(r"^Title:[ \t]*(.+)((?:\n[ \t]+\S.*)*)", re.MULTILINE)
EBOOK_OF = re.compile(r"Project Gutenberg(?:'s|’s| EBook of| eBook of| Etext of)\s+(.+?),\s+by\b", re.IGNORECASE)
DECLARED_CHARSET = re.compile(rb"Character set encoding:[ \t]*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
PARAGRAPH_BREAK = re.compile(r"\n[ \t\u3000]*\n")


@dataclass
class BookOptions:
    chunk_chars: int | None = None
    """Split each book into chunks of at most this many characters, on paragraph
    boundaries (a longer paragraph is cut at line breaks, then hard). None: one
    document per book."""
    strip_gutenberg: bool = True
    """Cut Project Gutenberg headers, footers and licence text at their markers."""
    max_bytes: int = 256 << 20
    """A book whose (decompressed) size exceeds this is rejected as ``too-large``
    without being decoded: a cap on memory and on decompression bombs."""
    encoding: str | None = None
    """Decode every file with this codec (e.g. ``gb18030``) instead of detecting it;
    a file it cannot decode is rejected as ``undecodable``."""

    def validate(self) -> None:
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"encoding: unknown codec {self.encoding!r}") from None
        if self.chunk_chars is not None and self.chunk_chars < 1:
            raise ValueError("chunk_chars: must be a positive number of characters (or null)")
        if self.max_bytes < 1:
            raise ValueError("max_bytes: must be positive")


class BookReader(Reader):
    format = "txt"
    Options = BookOptions
    schema = SCHEMA
    suffixes = (".txt", ".txt.gz")

    def read(self, task: Task) -> Iterator[ReadBatch]:
        loaded = self._load(task.path)
        if isinstance(loaded, str):
            yield self._reject(task.path, loaded)
            return
        text, encoding = loaded
        title = None
        if self.options.strip_gutenberg:
            text, title = strip_gutenberg(text)
        text = text.strip()
        if not text:
            yield self._reject(task.path, "empty-after-boilerplate", title, encoding)
            return
        chunks = [text] if self.options.chunk_chars is None else split_chunks(text, self.options.chunk_chars)
        for start in range(0, len(chunks), self.batch_rows):
            rows = [self._row(task.path, index, chunks[index], title, encoding)
                    for index in range(start, min(start + self.batch_rows, len(chunks)))]
            yield ReadBatch(docs=pa.Table.from_pylist(rows, schema=SCHEMA), records=1 if start == 0 else 0)

    def _load(self, path: str) -> tuple[str, str] | str:
        """``(text, encoding)``, or the reason the file is rejected."""
        try:
            data = _read_capped(path, self.options.max_bytes)
        except (OSError, EOFError, zlib.error) as err:  # e.g. a truncated .gz
            return f"unreadable:{type(err).__name__}"
        if data is None:
            return "too-large"
        if not data.strip():
            return "empty"
        if self.options.encoding is not None:
            try:
                text = data.decode(self.options.encoding)
            except UnicodeDecodeError:
                return "undecodable"
            return normalize_newlines(text.removeprefix("\ufeff")), codecs.lookup(self.options.encoding).name
        return decode_book(data)

    def _reject(self, path: str, reason: str, title: str | None = None, encoding: str | None = None) -> ReadBatch:
        row = self._row(path, 0, None, title, encoding)
        row["reject_reason"] = reason
        return ReadBatch(rejects=pa.Table.from_pylist([row], schema=REJECT_SCHEMA), records=1)

    def _row(self, path: str, index: int, text: str | None, title: str | None, encoding: str | None) -> dict:
        return {"id": doc_id(self.source, f"{path}#{index}"), "source": self.source, "text": text, "url": None,
                "path": printable(path), "title": title, "encoding": encoding, "chunk_index": index}


def _read_capped(path: str, max_bytes: int) -> bytes | None:
    """The file's (decompressed) bytes, or None when there are more than ``max_bytes``."""
    with open_binary(path) as f:
        data = f.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def decode_book(data: bytes) -> tuple[str, str] | str:
    """``(text with \\n line endings, encoding)``, or a reject reason (``binary``, ``undecodable``)."""
    decoded = decode_bytes(data)
    if decoded is None:
        return "binary" if b"\x00" in data[:SNIFF_BYTES] else "undecodable"
    text, encoding = decoded
    return normalize_newlines(text), ("ascii" if encoding == "utf-8" and data.isascii() else encoding)


def decode_bytes(data: bytes) -> tuple[str, str] | None:
    """``(text, encoding)`` with any byte-order mark dropped, or None for binary or undecodable bytes.

    ``utf-8-lossy``: UTF-8 with a few invalid bytes, each replaced by U+FFFD (decoding the
    whole text as a single-byte codec instead would garble every other non-ASCII character).
    """
    encoding = detect_encoding(data)
    if encoding is None:
        return None
    text = data.decode("utf-8", "replace") if encoding == UTF8_LOSSY else data.decode(encoding)
    return (text[1:] if text.startswith("\ufeff") else text), encoding


def detect_encoding(data: bytes) -> str | None:
    """The codec that decodes ``data`` (strictly), or None for binary or undecodable bytes."""
    for bom, name in BOMS:
        if data.startswith(bom):
            return name if _decodes(data, name) else None
    if b"\x00" in data[:SNIFF_BYTES]:
        return None
    if _decodes(data, "utf-8"):
        return "utf-8"
    if _mostly_utf8(data):
        return UTF8_LOSSY
    declared = DECLARED_CHARSET.search(data[:SNIFF_BYTES])
    candidates = []
    if declared:
        candidates.append(declared.group(1).decode("ascii"))
    import charset_normalizer

    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is not None:
        tied = [m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
        western = [name for name in tied if _canonical(name) in WESTERN_SINGLE_BYTE]
        candidates.append(western[0] if western else best.encoding)  # short texts tie: prefer the common codec
    for name in filter(None, map(_canonical, candidates)):
        if not _decodes(data, name):
            continue
        western = "cp1252" if C1_BYTES.search(data) and _decodes(data, "cp1252") else "latin-1"
        if name in WESTERN_SINGLE_BYTE or (_is_single_byte(name) and data.decode(name) == data.decode(western)):
            return western  # the guess is ambiguous between single-byte codecs: the common Western one
        return name
    return None


def _mostly_utf8(data: bytes) -> bool:
    """At most 1 in 50 non-ASCII bytes is outside a valid UTF-8 sequence (and there are real sequences)."""
    high = len(data.translate(None, ASCII_BYTES))
    bad = data.decode("utf-8", "replace").count("\ufffd") - data.count("\ufffd".encode())
    return high >= 3 * bad + 20 and bad * 50 <= high


def _canonical(encoding: str) -> str | None:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def _is_single_byte(encoding: str) -> bool:
    return len("\u00e9\u4e2d".encode(encoding, "replace")) <= 2


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def strip_gutenberg(text: str) -> tuple[str, str | None]:
    """``(body, title)``: the text between the Project Gutenberg markers, and the header's title.

    Without markers the text comes back unchanged (and the title is None).
    """
    header_end = len(text) // 2
    start = None
    for match in START_MARKERS.finditer(text):
        if match.start() >= header_end:
            break
        start = match  # old files have a START line and, later, an "*END*THE SMALL PRINT" line
    body_start = start.end() if start else 0
    end = END_MARKERS.search(text, body_start if start else header_end)
    if start is None and end is None:
        return text, None
    header = text[: start.start()] if start else ""
    body = text[body_start : end.start() if end else len(text)]
    body = CREDITS.sub("", body, count=1)
    return body, _title(header) if PG_HEADER.search(header) else None


def _title(header: str) -> str | None:
    match = TITLE_LINE.search(header)
    if match:
        continuation = " ".join(line.strip() for line in match.group(2).split("\n") if line.strip())
        return " ".join(part for part in (match.group(1).strip(), continuation) if part)
    match = EBOOK_OF.search(header)
    return match.group(1).strip() if match else None


def split_chunks(text: str, chunk_chars: int) -> list[str]:
    """Greedy packing of whole paragraphs into chunks of at most ``chunk_chars`` characters.

    A paragraph longer than a chunk is packed line by line, and a line longer
    than a chunk is cut hard.
    """
    pieces: list[tuple[str, str]] = []  # (separator from the previous piece, piece)
    for paragraph in PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip("\n")
        if not paragraph.strip():
            continue
        if len(paragraph) <= chunk_chars:
            pieces.append(("\n\n", paragraph))
            continue
        for line_number, line in enumerate(paragraph.split("\n")):
            for cut in range(0, max(len(line), 1), chunk_chars):
                separator = "" if cut else "\n" if line_number else "\n\n"
                pieces.append((separator, line[cut : cut + chunk_chars]))
    chunks: list[str] = []
    current = ""
    for separator, piece in pieces:
        if current and len(current) + len(separator) + len(piece) > chunk_chars:
            chunks.append(current)
            current = ""
        current = current + separator + piece if current else piece
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()]
