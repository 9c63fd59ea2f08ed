"""Source code: directories, git checkouts and ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archives.

One document per file. Archives are read member by member, never extracted:
nothing is written to disk, so a member named ``../../evil.py`` cannot escape
(it is rejected as ``unsafe-path``), and symlinks are never followed (skipped).
Files that are not source code for a corpus are skipped and counted: vendored
or generated trees (``.git``, ``node_modules``, ``vendor``, ``dist`` ...),
minified bundles, lock files, binaries, files over ``max_file_bytes``, empty
files and files of no known language. Text that no encoding decodes is a
reject ``undecodable``; a corrupt archive is a reject that keeps every file
read before the damage.

StarCoder-style signals are columns on every file: ``size_bytes``,
``max_line_length``, ``avg_line_length``, ``alphanum_fraction`` and
``auto_generated`` (a marker such as "DO NOT EDIT" in the first lines). The
language table is documented in docs/code_languages.md.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.readers import ReadBatch, Reader, Task
from curate.readers.books import decode_bytes
from curate.readers.fileio import input_size, is_local_dir, open_raw, printable
from curate.remote import is_remote
from curate.schema import CORE_FIELDS, doc_id

#: File extension (lower case) -> language.
EXTENSIONS: dict[str, str] = {
    ".py": "Python", ".pyi": "Python", ".pyw": "Python",
    ".pyx": "Cython", ".pxd": "Cython",
    ".c": "C", ".h": "C",
    ".cc": "C++", ".cpp": "C++", ".cxx": "C++", ".c++": "C++", ".hh": "C++", ".hpp": "C++", ".hxx": "C++",
    ".ipp": "C++", ".inl": "C++",
    ".cu": "CUDA", ".cuh": "CUDA",
    ".cs": "C#",
    ".java": "Java",
    ".kt": "Kotlin", ".kts": "Kotlin",
    ".scala": "Scala", ".sc": "Scala",
    ".groovy": "Groovy", ".gradle": "Groovy",
    ".go": "Go",
    ".rs": "Rust",
    ".swift": "Swift",
    ".m": "Objective-C", ".mm": "Objective-C++",
    ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript", ".jsx": "JavaScript",
    ".ts": "TypeScript", ".tsx": "TypeScript", ".mts": "TypeScript", ".cts": "TypeScript",
    ".vue": "Vue", ".svelte": "Svelte",
    ".dart": "Dart",
    ".rb": "Ruby", ".rake": "Ruby", ".gemspec": "Ruby",
    ".php": "PHP",
    ".pl": "Perl", ".pm": "Perl",
    ".lua": "Lua",
    ".r": "R",
    ".jl": "Julia",
    ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell", ".ksh": "Shell", ".fish": "Shell",
    ".ps1": "PowerShell", ".psm1": "PowerShell",
    ".bat": "Batchfile", ".cmd": "Batchfile",
    ".sql": "SQL",
    ".hs": "Haskell", ".lhs": "Haskell",
    ".ml": "OCaml", ".mli": "OCaml",
    ".fs": "F#", ".fsi": "F#", ".fsx": "F#",
    ".ex": "Elixir", ".exs": "Elixir",
    ".erl": "Erlang", ".hrl": "Erlang",
    ".clj": "Clojure", ".cljs": "Clojure", ".cljc": "Clojure",
    ".lisp": "Common Lisp", ".lsp": "Common Lisp",
    ".el": "Emacs Lisp",
    ".scm": "Scheme", ".ss": "Scheme", ".rkt": "Racket",
    ".zig": "Zig",
    ".nim": "Nim",
    ".d": "D",
    ".pas": "Pascal", ".pp": "Pascal",
    ".f": "Fortran", ".for": "Fortran", ".f90": "Fortran", ".f95": "Fortran", ".f03": "Fortran", ".f08": "Fortran",
    ".adb": "Ada", ".ads": "Ada",
    ".cob": "COBOL", ".cbl": "COBOL",
    ".asm": "Assembly", ".s": "Assembly", ".nasm": "Assembly",
    ".v": "Verilog", ".sv": "SystemVerilog", ".svh": "SystemVerilog",
    ".vhd": "VHDL", ".vhdl": "VHDL",
    ".sol": "Solidity",
    ".tf": "HCL", ".hcl": "HCL",
    ".proto": "Protocol Buffer",
    ".thrift": "Thrift",
    ".graphql": "GraphQL", ".gql": "GraphQL",
    ".cmake": "CMake",
    ".mk": "Makefile", ".mak": "Makefile",
    ".dockerfile": "Dockerfile",
    ".nix": "Nix",
    ".vim": "Vim Script",
    ".tex": "TeX", ".sty": "TeX", ".bib": "BibTeX",
    ".html": "HTML", ".htm": "HTML", ".xhtml": "HTML",
    ".css": "CSS", ".scss": "SCSS", ".sass": "Sass", ".less": "Less",
    ".xml": "XML", ".xsd": "XML", ".xsl": "XML",
    ".json": "JSON",
    ".yaml": "YAML", ".yml": "YAML",
    ".toml": "TOML",
    ".ini": "INI", ".cfg": "INI",
    ".md": "Markdown", ".markdown": "Markdown",
    ".rst": "reStructuredText",
    ".ipynb": "Jupyter Notebook",
}

#: Whole file name -> language, for files known by name rather than extension.
FILENAMES: dict[str, str] = {
    "Makefile": "Makefile", "makefile": "Makefile", "GNUmakefile": "Makefile",
    "Dockerfile": "Dockerfile", "Containerfile": "Dockerfile",
    "CMakeLists.txt": "CMake",
    "Rakefile": "Ruby", "Gemfile": "Ruby", "Vagrantfile": "Ruby", "Podfile": "Ruby",
    "Jenkinsfile": "Groovy",
    "BUILD": "Starlark", "BUILD.bazel": "Starlark", "WORKSPACE": "Starlark", "Tiltfile": "Starlark",
    "SConstruct": "Python", "SConscript": "Python",
    "meson.build": "Meson",
    ".bashrc": "Shell", ".bash_profile": "Shell", ".zshrc": "Shell", ".profile": "Shell",
    "Justfile": "Just", "justfile": "Just",
}

#: Interpreter named by a ``#!`` line (extensionless scripts) -> language.
SHEBANGS: dict[str, str] = {
    "python": "Python", "python3": "Python", "python2": "Python",
    "sh": "Shell", "bash": "Shell", "zsh": "Shell", "ksh": "Shell", "dash": "Shell",
    "node": "JavaScript", "ruby": "Ruby", "perl": "Perl", "php": "PHP", "lua": "Lua", "Rscript": "R",
}

#: Extensions of formats that are never source text: skipped as ``binary`` without reading.
BINARY_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .icns .webp .tif .tiff .psd .svgz .pdf .ps .eps "
    ".zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .whl .egg .deb .rpm .dmg .iso "
    ".so .dll .dylib .a .lib .o .obj .exe .bin .class .pyc .pyo .pyd .wasm .node "
    ".woff .woff2 .ttf .otf .eot .mp3 .mp4 .wav .ogg .flac .avi .mov .mkv .webm "
    ".db .sqlite .sqlite3 .parquet .arrow .feather .npy .npz .pkl .pickle .h5 .hdf5 .pt .pth .onnx .ckpt".split()
)

MINIFIED_PATTERNS = ("*.min.js", "*.min.css", "*.min.mjs", "*-min.js", "*.bundle.js", "*.js.map", "*.css.map")
LOCKFILES = frozenset(
    "package-lock.json yarn.lock pnpm-lock.yaml npm-shrinkwrap.json Cargo.lock poetry.lock Pipfile.lock "
    "Gemfile.lock composer.lock go.sum mix.lock pdm.lock uv.lock".split()
)
DEFAULT_SKIP_DIRS = [
    ".git", ".hg", ".svn", "node_modules", "bower_components", "vendor", "third_party", "dist", "build",
    "__pycache__", ".tox", ".nox", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".eggs", ".idea", ".gradle", ".next", ".nuxt",
]
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")

SNIFF_BYTES = 8192
AUTO_GENERATED_HEAD_CHARS = 2000
AUTO_GENERATED = (
    r"\A(?:[^\n]*\n){0,4}[^\n]*"  # within the first five lines
    r"(?:auto-?generated|automatically generated|generated by|code generated|do not edit|this file (?:is|was) generated)"
)
SIGNAL_FIELDS = [
    pa.field("size_bytes", pa.int64()),
    pa.field("max_line_length", pa.int64()),
    pa.field("avg_line_length", pa.float64()),
    pa.field("alphanum_fraction", pa.float64()),
    pa.field("auto_generated", pa.bool_()),
]
BASE_FIELDS = [
    *CORE_FIELDS,
    pa.field("repo", pa.string()),
    pa.field("language", pa.string()),
    pa.field("encoding", pa.string()),
]
SCHEMA = pa.schema(BASE_FIELDS + SIGNAL_FIELDS)
REJECT_SCHEMA = SCHEMA.append(pa.field("reject_reason", pa.string()))
BATCH_TEXT_BYTES = 64 << 20


@dataclass
class CodeOptions:
    max_file_bytes: int = 1_000_000
    """Files larger than this are skipped as ``too-large`` (StarCoder-like cap)."""
    skip_dirs: list[str] = field(default_factory=lambda: list(DEFAULT_SKIP_DIRS))
    """Directory names whose whole tree is skipped as ``vendored-dir`` (VCS metadata, dependencies, build output)."""
    skip_minified: bool = True
    """Skip minified bundles and source maps by name (``*.min.js`` ...) as ``minified``."""
    skip_lockfiles: bool = True
    """Skip dependency lock files (``package-lock.json``, ``Cargo.lock`` ...) as ``lockfile``."""
    keep_unknown: bool = False
    """Keep text files of no known language (``language`` null) instead of skipping them as ``unknown-language``."""
    languages: list[str] = field(default_factory=list)
    """Keep only these languages (names as in docs/code_languages.md); empty: all."""

    def validate(self) -> None:
        if self.max_file_bytes < 1:
            raise ValueError("max_file_bytes: must be positive")
        known = set(EXTENSIONS.values()) | set(FILENAMES.values())
        unknown = [name for name in self.languages if name not in known]
        if unknown:
            raise ValueError(f"languages: unknown language {unknown[0]!r} (see docs/code_languages.md)")


def language_of(path: str, head: bytes = b"") -> str | None:
    """The language of a file from its name, extension, or (when it has none) its ``#!`` line."""
    name = posixpath.basename(path)
    if name in FILENAMES:
        return FILENAMES[name]
    if name.startswith("Dockerfile."):
        return "Dockerfile"
    extension = _extension(name)
    if extension:
        return EXTENSIONS.get(extension)
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode("ascii", "replace").split()
        if words:
            program = posixpath.basename(words[0])
            if program == "env" and len(words) > 1:
                program = words[1]
            return SHEBANGS.get(program.rstrip("0123456789.") or program, SHEBANGS.get(program))
    return None


def _extension(name: str) -> str:
    """``.py`` for ``a.py`` and ``.eslintrc.js``; empty for ``Makefile`` and ``.gitignore``."""
    lower = name.lower()
    dot = lower.rfind(".")
    return lower[dot:] if dot > 0 else ""


def code_signals(text: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
    """StarCoder-style signals of a string column, vectorized over the batch."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    text = pc.fill_null(text.cast(pa.string()), "")
    n = len(text)
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
    # lines as str.splitlines() counts them: a final newline ends the last line, it does not start one
    lines = pc.split_pattern(pc.replace_substring_regex(text, r"\n\z", ""), "\n")  # "" -> [""]
    line_chars = pc.utf8_length(lines.flatten()).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = lines.offsets.to_numpy()
    starts = offsets[:-1] - offsets[0]
    counts = np.diff(offsets)
    max_line = np.maximum.reduceat(line_chars, starts) if n else np.zeros(0, np.int64)
    avg_line = np.add.reduceat(line_chars, starts) / counts if n else np.zeros(0)
    alnum = _alnum_counts(text)
    alnum_fraction = np.divide(alnum, chars, out=np.zeros(n), where=chars > 0)
    head = pc.utf8_slice_codeunits(text, 0, AUTO_GENERATED_HEAD_CHARS)
    return {
        "size_bytes": pc.binary_length(text).cast(pa.int64()),
        "max_line_length": pa.array(max_line, pa.int64()),
        "avg_line_length": pa.array(avg_line, pa.float64()),
        "alphanum_fraction": pa.array(alnum_fraction, pa.float64()),
        "auto_generated": pc.match_substring_regex(head, AUTO_GENERATED, ignore_case=True),
    }


ASCII_ALNUM = np.zeros(256, dtype=np.int64)
ASCII_ALNUM[[*range(48, 58), *range(65, 91), *range(97, 123)]] = 1


def _alnum_counts(text: pa.Array) -> np.ndarray:
    """Letters and digits per row: a byte table for ASCII rows, a Unicode regex only for the others.

    (Counting regex matches row by row is ~3x slower, and source files are mostly ASCII.)
    """
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + n + 1]
    data = text.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    cumulative = np.concatenate(([0], np.cumsum(ASCII_ALNUM[data[offsets[0] : offsets[-1]]])))
    counts = cumulative[offsets[1:] - offsets[0]] - cumulative[offsets[:-1] - offsets[0]]
    non_ascii = np.flatnonzero(~pc.string_is_ascii(text).to_numpy(zero_copy_only=False))
    if len(non_ascii):
        kept = pc.replace_substring_regex(text.take(pa.array(non_ascii)), r"[^\p{L}\p{N}]+", "")
        counts[non_ascii] = pc.utf8_length(kept).to_numpy(zero_copy_only=False)
    return counts


def safe_member_path(name: str) -> str | None:
    """The archive member's path relative to the archive root, or None if it would escape it."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class CodeReader(Reader):
    format = "code"
    Options = CodeOptions
    schema = SCHEMA
    whole_directories = True

    def tasks(self, paths: list[str], target_bytes: int, fanout_bytes: int | None = None) -> list[Task]:
        """One task per repository: a folder that holds only archives or only git checkouts is a
        folder of repositories, and each of them becomes its own task."""
        expanded = []
        for path in paths:
            expanded += _repositories_in(path) or [path]
        return [Task(self.source, self.format, p) for p in expanded]

    def read(self, task: Task) -> Iterator[ReadBatch]:
        batch = _Batch(self, task)
        path = task.path
        lower = path.lower()
        try:
            if is_local_dir(path):
                for entry in self._walk(path, batch):
                    batch.consider(*entry)
                    yield from batch.flush_if_full()
            elif lower.endswith(".zip"):
                yield from self._read_zip(path, batch)
            elif lower.endswith(ARCHIVE_SUFFIXES):
                yield from self._read_tar(path, batch)
            elif is_remote(path) or os.path.isfile(path):  # a single source file: a one-file repo
                batch.repo = os.path.basename(os.path.dirname(path))
                batch.consider(os.path.basename(path), input_size(path), lambda: _read_file(path, self.options))
            else:
                batch.reject(os.path.basename(path), "not-found")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
            batch.reject(os.path.basename(path), f"corrupt-archive:{type(err).__name__}")
        yield from batch.flush()

    # -- directories -----------------------------------------------------------------------------------

    def _walk(self, top: str, batch: "_Batch") -> Iterator[tuple]:
        batch.repo = os.path.basename(os.path.normpath(top))
        skip_dirs = set(self.options.skip_dirs)
        def unreadable(_error: OSError) -> None:  # os.walk would otherwise drop the directory silently
            batch.skipped["unreadable-dir"] += 1

        for root, dirs, files in os.walk(top, followlinks=False, onerror=unreadable):
            dirs.sort()
            kept = []
            for name in dirs:
                if os.path.islink(os.path.join(root, name)):
                    batch.skipped["symlink"] += 1
                elif name in skip_dirs:
                    batch.skipped["vendored-dir"] += 1
                else:
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                full = os.path.join(root, name)
                relative = os.path.relpath(full, top).replace(os.sep, "/")
                try:
                    info = os.lstat(full)
                except OSError:
                    batch.skipped["unreadable"] += 1
                    continue
                if stat.S_ISLNK(info.st_mode):
                    batch.skipped["symlink"] += 1
                elif not stat.S_ISREG(info.st_mode):
                    batch.skipped["special-file"] += 1
                else:
                    yield relative, info.st_size, (lambda full=full: _read_file(full, self.options))

    # -- archives --------------------------------------------------------------------------------------

    def _read_tar(self, path: str, batch: "_Batch") -> Iterator[ReadBatch]:
        batch.repo = _archive_stem(path)
        with open_raw(path) as raw, tarfile.open(fileobj=raw, mode="r|*") as archive:  # streaming: no seeks, members read in order
            for member in archive:
                if member.isdir():
                    continue
                relative = safe_member_path(member.name)
                if relative is None:
                    batch.reject(member.name, "unsafe-path")
                elif member.issym() or member.islnk():
                    batch.skipped["symlink"] += 1
                elif not member.isreg():
                    batch.skipped["special-file"] += 1
                else:
                    batch.consider(relative, member.size, lambda: _read_capped(archive.extractfile(member), self.options))
                yield from batch.flush_if_full()

    def _read_zip(self, path: str, batch: "_Batch") -> Iterator[ReadBatch]:
        batch.repo = _archive_stem(path)
        with open_raw(path) as raw, zipfile.ZipFile(raw) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                relative = safe_member_path(info.filename)
                mode = info.external_attr >> 16
                if relative is None:
                    batch.reject(info.filename, "unsafe-path")
                elif stat.S_ISLNK(mode):
                    batch.skipped["symlink"] += 1
                elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: written without Unix file-type bits
                    batch.skipped["special-file"] += 1
                else:
                    batch.consider(relative, info.file_size, lambda: _read_capped(archive.open(info), self.options))
                yield from batch.flush_if_full()


class _Batch:
    """Rows of one task being collected, with the skip decisions that need no file content."""

    def __init__(self, reader: CodeReader, task: Task):
        self.reader, self.task, self.options = reader, task, reader.options
        self.repo = ""
        self.skipped: Counter = Counter()
        self.skip_dirs = set(self.options.skip_dirs)
        self.vendored_seen: set[str] = set()
        self.rows: list[dict] = []
        self.rejects: list[dict] = []
        self.text_bytes = 0

    def skip_reason_by_name(self, relative: str, size: int) -> str | None:
        parts = relative.split("/")
        for depth, part in enumerate(parts[:-1]):
            if part in self.skip_dirs:
                prefix = "/".join(parts[: depth + 1])
                if prefix in self.vendored_seen:
                    return ""  # counted once per directory, like a pruned directory walk
                self.vendored_seen.add(prefix)
                return "vendored-dir"
        name = parts[-1]
        lower = name.lower()
        if self.options.skip_minified and any(fnmatch.fnmatchcase(lower, p) for p in MINIFIED_PATTERNS):
            return "minified"
        if self.options.skip_lockfiles and name in LOCKFILES:
            return "lockfile"
        extension = _extension(name)
        if extension in BINARY_EXTENSIONS:
            return "binary"
        if extension and not self.options.keep_unknown and language_of(name) is None:
            return "unknown-language"  # known without reading: only extensionless files have a #! line to look at
        if size > self.options.max_file_bytes:
            return "too-large"
        if size == 0:
            return "empty"
        return None

    def consider(self, relative: str, size: int, read) -> None:
        """Skip the file by its name and size, or ``read()`` it and keep, skip or reject it by its content."""
        reason = self.skip_reason_by_name(relative, size)
        if reason is not None:
            if reason:
                self.skipped[reason] += 1
            return
        try:
            data = read()
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError, RuntimeError) as err:
            self.reject(relative, f"unreadable:{type(err).__name__}")
            return
        if data is None:  # the declared size lied: more bytes than the cap
            self.skipped["too-large"] += 1
            return
        if b"\x00" in data[:SNIFF_BYTES]:
            self.skipped["binary"] += 1
            return
        language = language_of(relative, data[:256])
        options = self.options
        if language is None and not options.keep_unknown:
            self.skipped["unknown-language"] += 1
            return
        if options.languages and language not in options.languages:
            self.skipped["language-not-selected"] += 1
            return
        decoded = decode_bytes(data)  # the books reader's cascade: BOM, UTF-8, detection
        if decoded is None:
            self.reject(relative, "undecodable", language=language)
            return
        text, encoding = decoded
        self.rows.append(self._row(relative, text, language, encoding))
        self.text_bytes += len(data)

    def reject(self, relative: str, reason: str, *, language: str | None = None) -> None:
        row = self._row(relative, None, language, None)
        row["reject_reason"] = reason
        self.rejects.append(row)

    def _row(self, relative: str, text: str | None, language: str | None, encoding: str | None) -> dict:
        return {"id": doc_id(self.reader.source, f"{self.task.path}::{relative}"), "source": self.reader.source,
                "text": text, "url": None, "path": printable(relative), "repo": printable(self.repo),
                "language": language, "encoding": encoding}

    def flush_if_full(self) -> Iterator[ReadBatch]:
        if len(self.rows) >= self.reader.batch_rows or self.text_bytes >= BATCH_TEXT_BYTES:
            yield from self.flush()

    def flush(self) -> Iterator[ReadBatch]:
        if not (self.rows or self.rejects or self.skipped):
            return
        docs = _with_signals(self.rows, SCHEMA) if self.rows else None
        rejects = _with_signals(self.rejects, REJECT_SCHEMA) if self.rejects else None
        records = len(self.rows) + len(self.rejects) + sum(self.skipped.values())
        yield ReadBatch(docs=docs, rejects=rejects, skipped=self.skipped, records=records)
        self.rows, self.rejects, self.skipped = [], [], Counter()
        self.text_bytes = 0


def _with_signals(rows: list[dict], schema: pa.Schema) -> pa.Table:
    base = [f for f in schema if f.name not in {s.name for s in SIGNAL_FIELDS}]
    table = pa.Table.from_pylist(rows, schema=pa.schema(base))
    signals = code_signals(table["text"])
    has_text = pc.is_valid(table["text"])
    for signal in SIGNAL_FIELDS:  # rejects without text get null signals, not zeros
        values = signals[signal.name]
        table = table.append_column(signal, pc.if_else(has_text, values, pa.scalar(None, signal.type)))
    return table.select(schema.names)


def _read_file(path: str, options: CodeOptions) -> bytes | None:
    with open_raw(path) as f:
        return _read_capped(f, options)


def _read_capped(stream: BinaryIO | None, options: CodeOptions) -> bytes | None:
    """At most ``max_file_bytes`` of a stream; None if it holds more (a lying size header, a bomb)."""
    if stream is None:
        raise OSError("archive member has no data")
    with stream:
        data = stream.read(options.max_file_bytes + 1)
    return None if len(data) > options.max_file_bytes else data


def _repositories_in(path: str) -> list[str]:
    """The archives or git checkouts a folder of repositories holds; [] for anything else."""
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, ".git")):
        return []
    entries = [e for e in os.scandir(path) if not e.name.startswith(".") and not e.is_symlink()]
    entries.sort(key=lambda e: e.name)
    if not entries:
        return []
    if all(e.is_file() and e.name.lower().endswith(ARCHIVE_SUFFIXES) for e in entries):
        return [e.path for e in entries]
    if all(e.is_dir() and os.path.exists(os.path.join(e.path, ".git")) for e in entries):
        return [e.path for e in entries]
    return []


def _archive_stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
