"""Inputs that live elsewhere: ``s3://``, ``gs://``, ``hf://``, ``https://`` read through fsspec.

Why fsspec: s3fs, gcsfs and huggingface_hub's ``HfFileSystem`` are the clients datatrove and NeMo
Curator users already configure; each takes its credentials from the usual places (``AWS_*``
variables and ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``HF_TOKEN``), so curate keeps none of
its own. Remote files are streamed by range requests in blocks (``BLOCK_BYTES``), never downloaded
whole to local disk first.

A network error while reading is retried with exponential backoff, reopening the file at the byte
where the read stopped (``RetryingFile``); when it persists (``READ_ATTEMPTS`` tries), the error is
raised, and the runner turns it into a counted ``read-error`` reject of that task, like local damage.

Planning-time errors are one line: a bucket or URL that is not there is a ``ConfigError`` ("no input
matches"), missing credentials a ``ConfigError`` that says where credentials come from, a server that
does not answer a ``RemoteUnavailable`` (an ``OSError``: exit 1).
"""

from __future__ import annotations

import gzip
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from curate.params import ConfigError

#: URL schemes read through fsspec, and the extra that installs the client of each.
SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "hf": "hf", "http": "http", "https": "http"}
#: Bytes fetched per range request: large enough that request latency is paid once per 8 MiB.
BLOCK_BYTES = 8 << 20
#: Tries of a read before its error counts (``CURATE_READ_ATTEMPTS`` overrides).
READ_ATTEMPTS = 5
#: Seconds before the first retry; doubled each time, at most ``MAX_BACKOFF_S``
#: (``CURATE_READ_BACKOFF_S`` overrides the first).
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: HEAD/info requests in flight at once while planning (describing 90k inputs one by one takes an hour).
PLAN_THREADS = 32


class RemoteUnavailable(OSError):
    """A remote store did not answer (timeouts, connection refused) after the retries."""


def is_remote(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def _attempts() -> int:
    return max(1, int(os.environ.get("CURATE_READ_ATTEMPTS", READ_ATTEMPTS)))


def _first_backoff() -> float:
    return float(os.environ.get("CURATE_READ_BACKOFF_S", FIRST_BACKOFF_S))


def filesystem(path: str):
    """The fsspec filesystem for ``path``; a missing client names the extra that installs it."""
    scheme = path.partition("://")[0].lower()
    try:
        import fsspec

        if scheme in ("http", "https"):
            # ``HTTPFileSystem`` with range requests; the client's own timeout, so a dead server is an error
            import aiohttp

            return fsspec.filesystem(scheme, block_size=BLOCK_BYTES,
                                     client_kwargs={"timeout": aiohttp.ClientTimeout(total=None, sock_connect=30,
                                                                                     sock_read=60)})
        if scheme in ("s3", "s3a"):
            import s3fs  # noqa: F401 - the error below names the extra

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            return fsspec.filesystem("s3", default_block_size=BLOCK_BYTES,
                                     **({"endpoint_url": endpoint} if endpoint else {}))
        return fsspec.filesystem(scheme)
    except ImportError as err:
        extra = SCHEMES.get(scheme)
        how = f"pip install 'curate[{extra}]'"
        raise ConfigError(f"{path}: reading {scheme}:// needs {err.name or 'its client'} ({how})") from None


def _is_credentials_error(err: BaseException) -> bool:
    name = type(err).__name__
    return name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError") or (
        isinstance(err, PermissionError))


def _not_found(err: BaseException) -> bool:
    """Really not there (HTTP 404/410, no such key), not a FileNotFoundError fsspec's HTTP client raises
    for a server that refused the connection or timed out (it chains the real error)."""
    if not isinstance(err, FileNotFoundError):
        return False
    cause = err.__cause__
    return cause is None or isinstance(cause, FileNotFoundError) or getattr(cause, "status", None) in (404, 410)


def _plan_error(path: str, err: BaseException) -> Exception:
    """A planning-time error as a one-line ConfigError (wrong path, no access) or RemoteUnavailable."""
    if _not_found(err):
        return ConfigError(f"no input matches {path} (not found)")
    if isinstance(err, FileNotFoundError) and err.__cause__ is not None:
        err = err.__cause__
    if _is_credentials_error(err):
        return ConfigError(f"{path}: access denied or no credentials ({type(err).__name__}: {str(err)[:200]}); "
                           "curate uses the store's usual credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE and ~/.aws, "
                           "GOOGLE_APPLICATION_CREDENTIALS, HF_TOKEN)")
    return RemoteUnavailable(f"{path}: {type(err).__name__}: {str(err)[:300] or 'no answer'}")


def _check_aws_credentials(path: str) -> None:
    """S3 answers a request without credentials like one for a bucket that is not there; say which it is."""
    import botocore.session

    if botocore.session.get_session().get_credentials() is None:
        raise ConfigError(f"{path}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                          "or AWS_PROFILE with ~/.aws/credentials, or run on a node with an instance role)")


def _retrying(path: str, call: Callable[[], Any]) -> Any:
    """``call()`` with backoff on network errors; not-found and credential errors are not retried."""
    delay = _first_backoff()
    for attempt in range(_attempts()):
        try:
            return call()
        except IsADirectoryError:
            raise
        except Exception as err:  # noqa: BLE001 - network clients raise many types
            if _not_found(err) or _is_credentials_error(err) or attempt + 1 == _attempts():
                raise
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
    raise AssertionError("unreachable")


def expand(pattern: str, suffixes: tuple[str, ...] | None, whole_directories: bool) -> list[str]:
    """A remote pattern -> the files it names: a glob, a folder (prefix: its files with ``suffixes``),
    or one object. HTTP has no listing: a URL names exactly one file (globs are refused)."""
    fs = filesystem(pattern)
    scheme = pattern.partition("://")[0].lower()
    http = scheme in ("http", "https")
    if http and any(c in pattern.split("?")[0].split("://", 1)[1] for c in "*?["):
        raise ConfigError(f"{pattern}: HTTP has no file listing, so no globs; give each URL, or --input-list")
    if http:
        return [pattern]
    bucket = pattern.split("://", 1)[1].split("/", 1)[0]
    if scheme in ("s3", "s3a"):
        _check_aws_credentials(pattern)
    try:
        if scheme != "hf" and not _retrying(pattern, lambda: fs.exists(bucket)):
            raise ConfigError(f"{pattern}: bucket {bucket} does not exist (or is not visible with these credentials)")
        if any(c in pattern for c in "*?["):
            found = _retrying(pattern, lambda: fs.glob(pattern))
        elif _retrying(pattern, lambda: fs.isdir(pattern)) and not whole_directories:
            found = _retrying(pattern, lambda: fs.find(pattern))
            found = [p for p in found if suffixes is None or p.lower().endswith(suffixes)]
        else:
            found = [pattern]
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001
        raise _plan_error(pattern, err) from None
    return [_unstrip(scheme, p) for p in sorted(found)]


def _unstrip(scheme: str, path: str) -> str:
    """fsspec lists paths without their scheme; inputs keep theirs (ids and the manifest name the URL)."""
    return path if "://" in path else f"{scheme}://{path}"


def describe(paths: list[str]) -> dict[str, dict]:
    """Size and version of each remote input (``ETag`` or modification time), asked in parallel.

    Object stores give an ETag that changes with the content, so no bytes are sampled (that would
    be nine range requests per file); an HTTP server gives its ETag or Last-Modified when it has them.
    A file that is not there raises the one-line ``ConfigError`` of ``_plan_error``.
    """
    def one(path: str) -> tuple[str, dict]:
        fs = filesystem(path)
        try:
            info = _retrying(path, lambda: fs.info(path))
        except Exception as err:  # noqa: BLE001
            raise _plan_error(path, err) from None
        if info.get("type") == "directory":
            raise ConfigError(f"{path}: a folder, not a file")
        version = next((str(info[k]) for k in ("ETag", "etag", "LastModified", "last_modified", "mtime",
                                               "updated", "Last-Modified", "blob_id") if info.get(k)), "")
        size = info.get("size")
        return path, {"bytes": int(size) if size is not None else 0, "remote": version}

    with ThreadPoolExecutor(min(PLAN_THREADS, max(1, len(paths)))) as pool:
        return dict(pool.map(one, paths))


class RetryingFile(io.RawIOBase):
    """A remote file read by ranges; a failed read is retried with backoff from the same offset.

    The fsspec file is reopened after an error (its connection may be dead), seeked to where the
    read stopped, and the read repeated: the bytes handed out are exactly the file's, whatever
    failed in between. After ``READ_ATTEMPTS`` failures the last error is raised.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.fs = filesystem(path)
        self.pos = 0
        self.file = None
        self.size: int | None = None
        self.retries = 0
        self._open()

    def _open(self) -> None:
        def go():
            if self.file is not None:
                try:
                    self.file.close()
                except Exception:  # noqa: BLE001 - a dead connection
                    pass
            self.file = self.fs.open(self.path, "rb", block_size=BLOCK_BYTES, cache_type="readahead")
            self.file.seek(self.pos)
        _retrying(self.path, go)
        self.size = getattr(self.file, "size", None)

    def _retry(self, op: Callable[[], Any]) -> Any:
        delay = _first_backoff()
        for attempt in range(_attempts()):
            try:
                return op()
            except Exception as err:  # noqa: BLE001 - network clients raise many types
                if _not_found(err) or attempt + 1 == _attempts():
                    raise
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                try:
                    self._open()
                except Exception as again:  # noqa: BLE001 - tried again on the next round
                    if _not_found(again):
                        raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = len(buffer)

        def op() -> bytes:
            self.file.seek(self.pos)
            return self.file.read(want)
        data = self._retry(op)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(BLOCK_BYTES):
                chunks.append(chunk)
            return b"".join(chunks)

        def op() -> bytes:
            self.file.seek(self.pos)
            return self.file.read(n)
        data = self._retry(op)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        else:
            if self.size is None:
                raise io.UnsupportedOperation(f"{self.path}: the server gives no size, cannot seek from the end")
            self.pos = self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except Exception:  # noqa: BLE001
                pass
            self.file = None
        super().close()


def open_remote(path: str) -> RetryingFile:
    return RetryingFile(path)


def exists(path: str) -> bool:
    fs = filesystem(path)
    try:
        return bool(_retrying(path, lambda: fs.exists(path)))
    except Exception as err:  # noqa: BLE001
        raise _plan_error(path, err) from None


def glob(pattern: str) -> list[str]:
    """The files matching ``pattern``, with their scheme."""
    fs = filesystem(pattern)
    try:
        found = _retrying(pattern, lambda: fs.glob(pattern))
    except Exception as err:  # noqa: BLE001
        raise _plan_error(pattern, err) from None
    return [_unstrip(pattern.partition("://")[0], p) for p in sorted(found)]


def size(path: str) -> int:
    fs = filesystem(path)
    return int(_retrying(path, lambda: fs.size(path)) or 0)


def read_input_list(listing: str, base: str) -> list[str]:
    """The inputs named by a listing such as Common Crawl's ``warc.paths.gz``: one path a line,
    relative ones prefixed with ``base`` (``https://data.commoncrawl.org/`` for CC's own lists)."""
    try:
        if is_remote(listing):
            with RetryingFile(listing) as raw:
                data = raw.read()
        else:
            with open(os.path.expanduser(listing), "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"--input-list {listing}: not found") from None
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001
        raise _plan_error(listing, err) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ConfigError(f"--input-list {listing}: not a readable gzip file ({err})") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"--input-list {listing}: not a text list of paths (not UTF-8)") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line or os.path.isabs(line) or not base:
            out.append(line)
        else:
            out.append(base.rstrip("/") + "/" + line.lstrip("/"))
    if not out:
        raise ConfigError(f"--input-list {listing}: lists no paths")
    return out
