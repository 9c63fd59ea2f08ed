"""Real servers for the remote-input tests: an HTTP server with range requests, and moto's standalone
S3 server in its own process (what s3fs's own test-suite runs against). No mocks: curate's run takes the
same client path (aiohttp, s3fs/botocore) a user's run takes against the real services."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RangeHandler(SimpleHTTPRequestHandler):
    """``http.server`` with ``Range: bytes=a-b`` (206 answers) and two ways to fail on purpose:
    paths under ``/flaky/`` answer 503 to the first ``flaky_failures`` GETs of each range, paths under
    ``/broken/`` answer every GET with 503 (HEAD works: planning succeeds, reading fails). Every GET waits
    ``delay_s`` seconds first (a slow server: lets a test stop a run while it is working)."""

    flaky_failures = 2
    delay_s = 0.0
    failures: dict = {}
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # quiet test output
        pass

    def _local(self) -> str:
        path = self.path.split("?", 1)[0]
        for prefix in ("/flaky/", "/broken/"):
            if path.startswith(prefix):
                path = "/" + path[len(prefix):]
        return self.translate_path(path)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.path.startswith("/broken/"):
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
            return
        if self.path.startswith("/flaky/"):
            key = (self.path, self.headers.get("Range"))
            with self.lock:
                seen = self.failures.get(key, 0)
                self.failures[key] = seen + 1
            if seen < self.flaky_failures:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
                return
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        local = self._local()
        if not os.path.isfile(local):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = os.path.getsize(local)
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if match and size:
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(0, size - int(match.group(2)))
            if start >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1 if size else 0))
        self.send_header("ETag", f'"{size}-{int(os.path.getmtime(local))}"')
        self.end_headers()
        if not head and size:
            with open(local, "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(end - start + 1))


class HttpServer:
    """Serves ``root`` on 127.0.0.1 in a thread; ``url`` is its base URL (no trailing slash)."""

    def __init__(self, root: Path):
        # a class of its own: ``self.handler.delay_s`` slows this server only
        self.handler = type("ServerRangeHandler", (RangeHandler,), {"delay_s": 0.0})
        handler = lambda *a, **k: self.handler(*a, directory=str(root), **k)  # noqa: E731
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HttpServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class MotoServer:
    """moto's S3 server as its own process (``python -m moto.server``), like a user's MinIO or S3."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "MotoServer":
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("moto server did not start")

    def env(self) -> dict[str, str]:
        """What a user sets for an S3-compatible store: credentials and the endpoint."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
