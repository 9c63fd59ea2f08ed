"""``curate dashboard OUT --serve``: the report on a local web server, rebuilt as a run goes on.

The server answers ``/`` with the report and ``/version`` with a short fingerprint of the inputs
(the names, sizes and times of the run's stats files and manifest, the token stats, the mixture
files and the training logs). The page asks for ``/version`` every few seconds and reloads when it
changed; the report is rebuilt only then, so an idle run costs nothing. It binds to 127.0.0.1
unless told otherwise: a report holds crawled text and file paths that are not for everyone.
"""

from __future__ import annotations

import hashlib
import html
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from curate import storage
from curate.dashboards.report import POLL, ReportParams, build
from curate.params import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def fingerprint(run: str, tokens: str | None, mixture: str | None, train: list[str]) -> str:
    """Changes whenever a file the report reads is added, removed or rewritten."""
    patterns = [storage.join(run, "manifest.json"), storage.join(run, "stats", "*.parquet")]  # may be in a store
    if tokens:
        patterns.append(storage.join(tokens, "stats", "*.parquet"))
    if mixture:
        patterns += [os.path.join(mixture, "mixture.json"), os.path.join(mixture, "mixture.parquet")]
    for path in train:
        patterns += [os.path.join(path, name) for name in ("metrics.jsonl", "done.json", "*/metrics.jsonl",
                                                           "*/done.json")]
    digest = hashlib.sha256()
    for pattern in patterns:
        for path, size, version in storage.glob_info(pattern):  # locally the mtime, in a store the ETag
            digest.update(f"{path}\0{size}\0{version}\n".encode())
    return digest.hexdigest()[:16]


class ReportServer:
    """Builds the report on demand (one build at a time) and serves it."""

    def __init__(self, run: str, *, tokens: str | None = None, mixture: str | None = None,
                 train: list[str] | tuple = (), params: ReportParams | None = None, poll_ms: int = 3000):
        self.run, self.tokens, self.mixture, self.train = run, tokens, mixture, list(train)
        self.params = params or ReportParams()
        self.poll_ms = poll_ms
        self._lock = threading.Lock()
        self._built: tuple[str, bytes] | None = None

    def version(self) -> str:
        return fingerprint(self.run, self.tokens, self.mixture, self.train)

    def page(self) -> bytes:
        with self._lock:
            version = self.version()
            if self._built is None or self._built[0] != version:
                try:
                    report = build(self.run, tokens=self.tokens, mixture=self.mixture, train=self.train,
                                   params=self.params, refresh=version, poll_ms=self.poll_ms)
                    body = report.html
                except ConfigError as err:  # e.g. no finished task yet: say so, and keep polling
                    body = waiting_page(str(err), version, self.poll_ms)
                self._built = (version, body.encode("utf-8"))
            return self._built[1]


def waiting_page(message: str, version: str, poll_ms: int) -> str:
    script = POLL % poll_ms
    from curate.dashboards.report import _hash

    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src {_hash(script)}; "
            "connect-src 'self'; style-src 'unsafe-inline'\"><title>curate report: waiting</title></head>"
            f"<body data-version='{html.escape(version, quote=True)}' style='font:15px system-ui;margin:40px'>"
            f"<h1>No report yet</h1><p>{html.escape(message)}</p><p>This page reloads when the run writes its "
            f"first results.</p><script>{script}</script></body></html>")


def make_server(report: ReportServer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html", "/report.html"):
                body, kind = report.page(), "text/html; charset=utf-8"
            elif path == "/version":
                body, kind = report.version().encode(), "text/plain; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the console shows the URL, not every poll
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    return Server((host, port), Handler)
