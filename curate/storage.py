"""Where a run's output lives: a local folder or an object-store prefix (``s3://``, ``gs://``), one small API.

Why one layer: the runner, the workers, the global stages and ``curate stats``/``tokenize`` all read and
write the same output folder. On a cluster without a shared disk every node must reach it, so it lives
in an object store; on one machine it is a local folder. Code above this module names paths as strings
(``join(output, "docs", name)``) and never asks which kind it has.

The commit rule is the same for both: *a file is either whole under its final name or not there*.

- Local: written to a temporary name beside it, fsync'ed, then ``os.replace``d (a rename is atomic).
- Object stores have no rename. An object becomes visible only when its upload completes: a single
  PUT, or the final ``CompleteMultipartUpload`` of a multipart upload; a client that dies half-way
  leaves nothing under the key (an unfinished multipart upload is invisible to listings and reads,
  and a bucket lifecycle rule removes its parts). So a file is first written whole to local scratch
  space and then uploaded under its final key: a half-written shard can never be mistaken for a
  finished one. The task's stats object, uploaded after its shards, stays the commit marker.

Only the one-writer lock differs: ``put_if_absent`` is an ``O_EXCL`` create locally and a conditional
PUT (``If-None-Match: *``) on S3, which AWS S3 (since 2024), MinIO and moto honour.

Credentials come from the store's usual places (see ``curate.remote``); nothing here stores any.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curate.remote import _retrying, filesystem, is_remote

__all__ = [
    "is_remote", "join", "normalize", "exists", "isdir", "glob", "listdir", "makedirs", "remove", "rmtree",
    "read_bytes", "write_bytes", "read_json", "write_json", "put_file", "put_if_absent", "open_read",
    "parquet_file", "read_table", "write_table", "staged", "pyarrow_filesystem", "size", "basename", "dirname",
    "check_location", "num_rows", "register_duckdb", "scratch_dir", "local_temp", "list_prefix", "glob_info",
    "footer",
]

TMP_SUFFIX = ".tmp-"


def _strip(path: str) -> tuple[Any, str]:
    """(fsspec filesystem, path without the scheme) of a remote path."""
    fs = filesystem(path)
    return fs, fs._strip_protocol(path)


def _scheme(path: str) -> str:
    return path.partition("://")[0] + "://"


def normalize(path: str) -> str:
    """A local path made absolute; a URL without a trailing slash."""
    return path.rstrip("/") if is_remote(path) else os.path.abspath(path)


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(path)


def dirname(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if is_remote(path) else os.path.dirname(path)


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    fs, p = _strip(path)
    return bool(_retrying(path, lambda: fs.exists(p)))


def isdir(path: str) -> bool:
    """Locally a folder; in an object store a prefix that holds at least one object."""
    if not is_remote(path):
        return os.path.isdir(path)
    fs, p = _strip(path)
    fs.invalidate_cache(p)
    return bool(_retrying(path, lambda: fs.isdir(p)))


def glob(pattern: str) -> list[str]:
    """Sorted full paths matching ``pattern`` (``*`` within one level); listings are never cached."""
    if not is_remote(pattern):
        return sorted(_glob.glob(pattern))
    fs, p = _strip(pattern)
    fs.invalidate_cache()
    scheme = _scheme(pattern)
    return sorted(scheme + hit for hit in _retrying(pattern, lambda: fs.glob(p)))


def glob_info(pattern: str) -> list[tuple[str, int, str]]:
    """(full path, size, version) of each file matching ``pattern``, sorted, from one listing.

    The version changes when a file is rewritten: its mtime locally; the store's ETag (or its time of
    last modification) remotely. Reports and ``curate dashboard --serve`` use it to see a run change,
    and sizes come with it without a HEAD request per object.
    """
    if not is_remote(pattern):
        out = []
        for path in sorted(_glob.glob(pattern)):
            try:
                st = os.stat(path)
            except OSError:  # removed since the listing
                continue
            out.append((path, st.st_size, str(st.st_mtime_ns)))
        return out
    fs, p = _strip(pattern)
    fs.invalidate_cache()
    scheme = _scheme(pattern)
    found = _retrying(pattern, lambda: fs.glob(p, detail=True))
    out = []
    for hit, info in found.items():
        version = next((str(info[k]) for k in ("ETag", "etag", "LastModified", "updated", "mtime") if info.get(k)),
                       "")
        out.append((scheme + hit, int(info.get("size") or 0), version))
    return sorted(out)


def listdir(path: str) -> list[str]:
    """Names directly under ``path`` (files and folders/prefixes); empty when it does not exist."""
    if not is_remote(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    fs, p = _strip(path)
    fs.invalidate_cache(p)
    try:
        entries = _retrying(path, lambda: fs.ls(p, detail=False))
    except FileNotFoundError:
        return []
    return sorted({posixpath.basename(e.rstrip("/")) for e in entries if e.rstrip("/") != p.rstrip("/")})


def makedirs(path: str) -> None:
    """Folders exist implicitly in object stores; locally they are created."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def size(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    fs, p = _strip(path)
    return int(_retrying(path, lambda: fs.size(p)))


def remove(path: str) -> None:
    """Remove one file; a missing one is not an error."""
    if not is_remote(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    fs, p = _strip(path)
    with contextlib.suppress(FileNotFoundError):
        _retrying(path, lambda: fs.rm_file(p))


def rmtree(path: str) -> None:
    """Remove a folder (a prefix) and everything under it; a missing one is not an error."""
    if not is_remote(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        return
    fs, p = _strip(path)
    fs.invalidate_cache(p)
    with contextlib.suppress(FileNotFoundError):
        if _retrying(path, lambda: fs.exists(p)):
            _retrying(path, lambda: fs.rm(p, recursive=True))


def read_bytes(path: str) -> bytes:
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    fs, p = _strip(path)
    return _retrying(path, lambda: fs.cat_file(p))


def _local_tmp(path: str) -> str:
    return f"{path}{TMP_SUFFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_bytes(path: str, data: bytes) -> None:
    """Whole under ``path`` or not there (see the module docstring)."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = _local_tmp(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return
    fs, p = _strip(path)
    _retrying(path, lambda: fs.pipe_file(p, data))


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path).decode("utf-8"))


def write_json(path: str, data: Any) -> None:
    write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode("utf-8"))


def put_file(local_path: str, path: str) -> None:
    """Move a finished local file to ``path``: a rename locally, an upload (then the local copy is
    removed) to an object store. The object appears only when the upload completes."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.replace(local_path, path)
        return
    fs, p = _strip(path)
    _retrying(path, lambda: fs.put_file(local_path, p))
    os.remove(local_path)


def put_if_absent(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if nothing is there; True when this call created it."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, p = _strip(path)

    def create() -> bool:
        try:
            fs.pipe_file(p, data, mode="create")
        except (FileExistsError, OSError) as err:  # "already there" is an answer, not an error to retry
            if isinstance(err, FileExistsError) or "PreconditionFailed" in str(err) or "412" in str(err):
                return False
            raise
        return True
    return bool(_retrying(path, create))


def open_read(path: str):
    """A seekable binary file (remote: streamed by range requests with retries)."""
    if not is_remote(path):
        return open(path, "rb")
    from curate.remote import open_remote

    return open_remote(path)


def pyarrow_filesystem(path: str):
    """(pyarrow FileSystem, path inside it): lets pyarrow and DuckDB-free readers open remote files."""
    if not is_remote(path):
        return None, path
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, p = _strip(path)
    return PyFileSystem(FSSpecHandler(fs)), p


def parquet_file(path: str) -> pq.ParquetFile:
    if not is_remote(path):
        return pq.ParquetFile(path)
    return pq.ParquetFile(pa.BufferReader(read_bytes(path)))


def read_table(path: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """One Parquet file (remote: fetched whole; shards and step files are tens of MB at most)."""
    if not is_remote(path):
        return pq.read_table(path, columns=columns, schema=schema)
    return pq.read_table(pa.BufferReader(read_bytes(path)), columns=columns, schema=schema)


def write_table(path: str, table: pa.Table, compression: str = "zstd", **kwargs: Any) -> None:
    """A Parquet file, whole under ``path`` or not there."""
    with staged(path) as local:
        pq.write_table(table, local, compression=compression, **kwargs)


@contextlib.contextmanager
def staged(path: str) -> Iterator[str]:
    """A local file name to write; on success it is committed to ``path`` (renamed, or uploaded whole).

    Local scratch space for remote outputs is ``CURATE_SCRATCH`` or the system's temporary folder.
    """
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        local = _local_tmp(path)
    else:
        scratch = os.environ.get("CURATE_SCRATCH") or tempfile.gettempdir()
        os.makedirs(scratch, exist_ok=True)
        local = os.path.join(scratch, f"curate-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    try:
        yield local
        put_file(local, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(local)


def check_location(path: str) -> None:
    """Before a run writes to ``path``: its store is reachable with the credentials found, and its bucket
    exists. A one-line ``ConfigError`` (no credentials, no bucket) or ``RemoteUnavailable`` (no answer);
    nothing is written. Local paths are checked by the runner itself."""
    if not is_remote(path):
        return
    from curate.params import ConfigError
    from curate.remote import _check_aws_credentials, _plan_error

    scheme = path.partition("://")[0].lower()
    fs = filesystem(path)  # a missing client names the extra that installs it
    if scheme in ("s3", "s3a"):
        _check_aws_credentials(path)
    bucket = path.split("://", 1)[1].split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"{path}: no bucket in the URL (s3://BUCKET/prefix/)")
    try:
        there = _retrying(path, lambda: fs.exists(bucket))
    except Exception as err:  # noqa: BLE001 - the store's own errors, made one line
        raise _plan_error(path, err) from None
    if not there:
        raise ConfigError(f"{path}: bucket {bucket} does not exist (or is not visible with these credentials); "
                          "create it first")


def num_rows(path: str) -> int:
    """Rows of a Parquet file, from its footer only (remote: a few range requests, not the whole file)."""
    if not is_remote(path):
        return pq.ParquetFile(path).metadata.num_rows
    with open_read(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


def footer(path: str) -> tuple[pa.Schema, pq.FileMetaData]:
    """(Arrow schema, metadata) of a Parquet file from its footer only (remote: a few range requests,
    never the whole file): what describing a folder of shards needs (rows, sizes, columns)."""
    with open_read(path) as f:
        shard = pq.ParquetFile(f)
        return shard.schema_arrow, shard.metadata


def register_duckdb(con, path: str) -> None:
    """Let DuckDB read ``path`` (a remote URL) through the store's fsspec client: DuckDB's own httpfs
    extension is downloaded at run time, impossible offline and one more thing for every node to fetch.
    Listings are not cached: a run's shards change under a long-lived client. A second path of the same
    kind of store (a run and its token folder, both in S3) uses the client already registered."""
    if not is_remote(path):
        return
    fs = filesystem(path)
    fs.invalidate_cache()
    try:
        con.register_filesystem(fs)
    except Exception as err:  # noqa: BLE001 - duckdb.InvalidInputException, without importing duckdb here
        if "already been registered" not in str(err):
            raise


def scratch_dir() -> str:
    """Local scratch space for files on their way to an object store (``CURATE_SCRATCH`` or the temp folder)."""
    scratch = os.environ.get("CURATE_SCRATCH") or tempfile.gettempdir()
    os.makedirs(scratch, exist_ok=True)
    return scratch


def local_temp(path: str) -> str:
    """A local file name to write before committing it to ``path`` with ``put_file``: beside it locally
    (a rename is then atomic), in the scratch space for an object store."""
    if not is_remote(path):
        return _local_tmp(path)
    return os.path.join(scratch_dir(), f"curate-{uuid.uuid4().hex}-{posixpath.basename(path)}")


def list_prefix(directory: str, name_prefix: str) -> list[str]:
    """Full paths of the files directly in ``directory`` whose names start with ``name_prefix``, sorted.

    In an object store the prefix is given to the listing request (S3, GCS): one task's shards are found
    without listing every shard of the run (a glob would list the whole folder: 90 requests for 90,000
    shards, for each of 90,000 tasks)."""
    if not is_remote(directory):
        if not os.path.isdir(directory):
            return []
        return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(name_prefix))
    fs, p = _strip(directory)
    p = p.rstrip("/")
    fs.invalidate_cache(p)
    try:
        found = _retrying(directory, lambda: fs.find(p, prefix=name_prefix, maxdepth=1))
    except TypeError:  # a client whose find takes no prefix: list the folder
        found = [f for f in _retrying(directory, lambda: fs.find(p, maxdepth=1))
                 if posixpath.basename(f).startswith(name_prefix)]
    except FileNotFoundError:
        return []
    scheme = _scheme(directory)
    return sorted(scheme + f for f in found if posixpath.dirname(f.rstrip("/")) == p)
