"""Drive a real headless Chromium over the DevTools protocol: load a page, collect console errors and
uncaught exceptions, evaluate JavaScript, take a screenshot.

Used by the report's tests and to take the README's screenshot:

    python -m curate.dashboards.browser report.html docs/img/dashboard.png --full-page --max-height 1500
    python -m curate.dashboards.browser report.html docs/img/dashboard-signals.png --selector '#signals' --max-height 1000

It speaks the protocol directly over one websocket (``websocket-client``) to Debian's ``chromium``
(``/usr/bin/chromium``; ``CURATE_CHROMIUM`` names another): no driver binary, and nothing is
downloaded. Chromium runs with a fresh profile in a temporary folder and with everything that would
reach the network off (component updates, sync, background networking, QUIC).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a page did not load in time."""


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CURATE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class PageLog:
    """What a page reported while it loaded and ran."""

    errors: list[str] = field(default_factory=list)      # console.error, uncaught exceptions, failed loads
    messages: list[str] = field(default_factory=list)    # every console message and log entry


class Browser:
    """One headless Chromium with one tab; ``with Browser() as b: b.open(url) ...``."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 60.0):
        self.width, self.height, self.timeout = width, height, timeout
        self.process: subprocess.Popen | None = None
        self.profile = ""
        self.ws = None
        self._id = 0
        self.log = PageLog()
        self._events: list[dict] = []

    def __enter__(self) -> Browser:
        import websocket

        binary = chromium_path()
        if binary is None:
            raise BrowserError("chromium not found: install Debian's package (`apt-get install -y chromium`, "
                               "or `bash tests/setup_browser.sh`) or set CURATE_CHROMIUM")
        self.profile = tempfile.mkdtemp(prefix="curate-chromium-")
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with code {self.process.returncode} before it listened")
            if time.monotonic() > deadline:
                self.close()
                raise BrowserError("chromium did not open its DevTools port in time")
            time.sleep(0.05)
        with open(port_file, encoding="utf-8") as f:
            port = int(f.readline().strip())
        target = self._page_target(port, deadline)
        self.ws = websocket.create_connection(target, timeout=self.timeout, suppress_origin=True)
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        return self

    def _page_target(self, port: int, deadline: float) -> str:
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    targets = json.loads(response.read())
                for target in targets:
                    if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
                        return target["webSocketDebuggerUrl"]
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrowserError("chromium has no page target")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self.ws = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ---- the protocol -----------------------------------------------------------------------------
    def call(self, method: str, **params) -> dict:
        """Send one command and wait for its answer; events that arrive meanwhile are recorded."""
        self._id += 1
        my_id = self._id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == my_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self._record(message)
        raise BrowserError(f"{method}: no answer in {self.timeout:.0f}s")

    def _record(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        self._events.append(event)
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.log.messages.append(f"console.{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.log.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text", "")
            self.log.errors.append(f"exception: {description}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.log.messages.append(f"log.{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}")
            if entry.get("level") == "error":
                self.log.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())

    def _wait_event(self, method: str, timeout: float) -> dict:
        for event in self._events:
            if event.get("method") == method:
                self._events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self.ws.recv())
            except Exception as err:  # noqa: BLE001 - websocket timeout
                if "timed out" in str(err).lower():
                    break
                raise
            finally:
                self.ws.settimeout(self.timeout)
            self._record(message)
            if message.get("method") == method:
                self._events.remove(message)
                return message
        raise BrowserError(f"no {method} in {timeout:.0f}s")

    # ---- what tests use ---------------------------------------------------------------------------
    def open(self, url: str, *, ready: str | None = None) -> PageLog:
        """Navigate and wait for the load event, then until the JavaScript expression ``ready`` is true."""
        self.log = PageLog()
        self._events.clear()
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired", self.timeout)
        if ready:
            self.wait_for(ready)
        self.settle()
        return self.log

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except BrowserError:  # the page is between documents (a reload): ask again
                pass
            time.sleep(0.1)
        raise BrowserError(f"not true after {self.timeout:.0f}s: {expression}")

    def settle(self, seconds: float = 0.3) -> None:
        """Read the events of the next ``seconds`` (late errors: timers, handlers of failed images)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self._record(json.loads(self.ws.recv()))
            except Exception:  # noqa: BLE001 - nothing more arrived
                break
        self.ws.settimeout(self.timeout)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serializable values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if result.get("exceptionDetails"):
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: str, *, full_page: bool = False, max_height: int = 6000,
                   selector: str | None = None) -> str:
        """A PNG of the viewport, the whole page (up to ``max_height``), or the element ``selector`` names."""
        params: dict = {"format": "png"}
        if selector:
            box = self.evaluate(f"(function(){{var r=document.querySelector({json.dumps(selector)})"
                                ".getBoundingClientRect();return [r.left+scrollX,r.top+scrollY,r.width,r.height];})()")
            params["clip"] = {"x": box[0], "y": box[1], "width": box[2], "height": min(box[3], max_height), "scale": 1}
            params["captureBeyondViewport"] = True
        elif full_page:
            height = min(max_height, int(self.evaluate("document.documentElement.scrollHeight")))
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path


def main() -> None:
    import argparse
    import pathlib

    parser = argparse.ArgumentParser(description="Screenshot a curate report in headless Chromium.")
    parser.add_argument("report")
    parser.add_argument("png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true")
    parser.add_argument("--selector", help="only the element this CSS selector names (e.g. '#signals')")
    parser.add_argument("--max-height", type=int, default=6000)
    args = parser.parse_args()
    with Browser(args.width, args.height) as browser:
        log = browser.open(pathlib.Path(args.report).resolve().as_uri(),
                           ready="document.body && document.body.hasAttribute('data-charts-drawn')")
        # headless Chromium reports no mouse, so Plotly shows every chart's toolbar (a desktop shows it on hover)
        browser.evaluate("document.querySelectorAll('.modebar').forEach(e => e.style.display = 'none')")
        browser.screenshot(args.png, full_page=args.full_page, selector=args.selector, max_height=args.max_height)
    for line in log.errors:
        print("error:", line)
    print(args.png)


if __name__ == "__main__":
    main()
