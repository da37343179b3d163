"""A small headless-Chromium driver for tests, using only the standard library.

It speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON messages), so no websocket client, Selenium or Playwright is needed. It records
every console message, uncaught exception, browser log entry and network request of a page, waits
until a JavaScript condition holds, and evaluates an expression in the page::

    from tests.browser import find_chromium, load_page

    page = load_page(tmp_path / "report.html", wait_for="window.__ready === true",
                     evaluate="document.querySelectorAll('svg').length")
    assert not page.errors, page.errors
    assert page.value > 0
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """Chromium could not be started, or did not answer in time."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class ConsoleEntry:
    """One console call, uncaught exception or browser log entry."""

    source: str  # "console", "exception" or "log"
    level: str  # "error", "warning", "info", ...
    text: str

    def __str__(self) -> str:
        return f"[{self.source}:{self.level}] {self.text}"


@dataclass
class PageResult:
    """What happened while a page loaded: console entries, requests and the evaluated value."""

    url: str
    value: Any = None
    console: list[ConsoleEntry] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    ready: bool = False

    @property
    def errors(self) -> list[ConsoleEntry]:
        """Console errors, uncaught exceptions and error-level browser log entries."""
        return [e for e in self.console if e.level in ("error", "assert")]

    @property
    def external_requests(self) -> list[str]:
        """Requests to anything but ``file:``, ``data:``, ``blob:`` and ``about:`` URLs."""
        local = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")
        return [u for u in self.requests if not u.startswith(local)]


def _high_fd(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered 10 or above (so that dup2 onto 3 and 4 in
    the child cannot clobber it, and the child keeps only fds 3 and 4)."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """A headless Chromium process driven over the DevTools pipe. Use as a context manager."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("chromium not found (install it, e.g. apt-get install chromium, "
                               "or set CHROMIUM=/path/to/chrome)")
        self.executable = exe
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._stderr: Any = None

    # -- process ---------------------------------------------------------------------------------
    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="dlbench-chromium-")
        to_child_r, to_child_w = (_high_fd(fd) for fd in os.pipe())
        from_child_r, from_child_w = (_high_fd(fd) for fd in os.pipe())

        def wire_pipes() -> None:  # runs in the child between fork and exec
            os.dup2(to_child_r, 3)  # dup2 clears close-on-exec: fds 3 and 4 reach chromium
            os.dup2(from_child_w, 4)

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        args = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}",
                "about:blank"]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=self._stderr, preexec_fn=wire_pipes,
                                      close_fds=False)  # close_fds would shut 3 and 4
        os.close(to_child_r)
        os.close(from_child_w)
        self._write_fd = to_child_w
        self._read_fd = from_child_r

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for fd in (self._write_fd, self._read_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._stderr is not None:
            self._stderr.close()
        if self._profile is not None:
            self._profile.cleanup()
        self._proc = None

    def stderr_tail(self, n: int = 2000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-n:]

    # -- protocol --------------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._write_fd, data)
            data = data[n:]
        return self._next_id

    def _read_message(self, deadline: float) -> dict[str, Any] | None:
        """Next message from the browser, or None when the deadline passes first."""
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed the DevTools pipe: {self.stderr_tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send a command and wait for its answer; events that arrive meanwhile are kept."""
        msg_id = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                raise BrowserError(f"no answer to {method} within {timeout or self.timeout}s")
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def pump(self, seconds: float) -> None:
        """Collect events for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while (msg := self._read_message(deadline)) is not None:
            if "method" in msg:
                self._events.append(msg)

    def wait_event(self, method: str, session: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        seen = len(self._events)
        while True:
            for ev in self._events[seen:]:
                if ev["method"] == method and ev.get("sessionId") == session:
                    return True
            seen = len(self._events)
            msg = self._read_message(deadline)
            if msg is None:
                return False
            if "method" in msg:
                self._events.append(msg)

    # -- pages -----------------------------------------------------------------------------------
    def load(self, url: str, *, wait_for: str | None = None, evaluate: str | None = None,
             timeout: float | None = None, settle: float = 0.3,
             screenshots: dict[Path, str] | None = None) -> PageResult:
        """Open ``url`` in a new tab, wait for its load event and for ``wait_for`` (a JS
        expression) to be truthy, evaluate ``evaluate`` (JSON-serialisable value) and return
        everything the page logged; ``screenshots``: PNG file -> CSS selector of the element to
        capture (a 1400 px wide page), written after ``evaluate``."""
        timeout = timeout or self.timeout
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        first_event = len(self._events)
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        result = PageResult(url=url)
        loaded = self.wait_event("Page.loadEventFired", session, timeout)
        if not loaded:
            raise BrowserError(f"{url} did not finish loading within {timeout}s")
        ready = True
        if wait_for:
            ready = False
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._evaluate(f"Boolean({wait_for})", session):
                    ready = True
                    break
                self.pump(0.1)
        result.ready = ready
        self.pump(settle)
        if evaluate:
            result.value = self._evaluate(evaluate, session)
        for png, selector in (screenshots or {}).items():
            self._screenshot(session, selector, png)
        self.pump(0.05)
        for ev in self._events[first_event:]:
            if ev.get("sessionId") == session:
                _record(ev, result)
        with contextlib.suppress(BrowserError):
            self.call("Target.closeTarget", {"targetId": target}, timeout=5)
        return result

    def _screenshot(self, session: str, selector: str, png: Path) -> None:
        """Capture the element ``selector`` matches (its whole box, beyond the viewport) as PNG."""
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900,
                                                         "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        box = self._evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                             "if (!e) return null; const r = e.getBoundingClientRect(); "
                             "return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; })()",
                             session)
        if not box:
            raise BrowserError(f"no element matches {selector!r} for a screenshot")
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": box["x"], "y": box["y"], "width": max(box["w"], 1), "height": max(box["h"], 1),
                     "scale": 1}}, session=session)
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(shot["data"]))

    def _evaluate(self, expression: str, session: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session=session)
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluating {expression!r} threw: "
                               f"{_exception_text(res['exceptionDetails'])}")
        return res.get("result", {}).get("value")


def _exception_text(details: dict[str, Any]) -> str:
    exc = details.get("exception") or {}
    return str(exc.get("description") or details.get("text") or "exception")


def _record(ev: dict[str, Any], result: PageResult) -> None:
    method, params = ev["method"], ev.get("params", {})
    if method == "Runtime.consoleAPICalled":
        parts = []
        for arg in params.get("args", []):
            parts.append(str(arg.get("value", arg.get("description", arg.get("type", "")))))
        level = {"warning": "warning", "error": "error", "assert": "assert"}.get(params.get("type"),
                                                                                  "info")
        result.console.append(ConsoleEntry("console", level, " ".join(parts)))
    elif method == "Runtime.exceptionThrown":
        result.console.append(ConsoleEntry("exception", "error",
                                           _exception_text(params.get("exceptionDetails", {}))))
    elif method == "Log.entryAdded":
        entry = params.get("entry", {})
        text = entry.get("text", "")
        if entry.get("url"):
            text += f" ({entry['url']})"
        result.console.append(ConsoleEntry("log", entry.get("level", "info"), text))
    elif method == "Network.requestWillBeSent":
        result.requests.append(params.get("request", {}).get("url", ""))


def load_page(path_or_url: str | Path, *, wait_for: str | None = None,
              evaluate: str | None = None, timeout: float = 60.0) -> PageResult:
    """Start Chromium, load one page (a file path or URL), and return what happened."""
    url = path_or_url if isinstance(path_or_url, str) and "://" in path_or_url else (
        Path(path_or_url).resolve().as_uri())
    with Chromium(timeout=timeout) as browser:
        return browser.load(url, wait_for=wait_for, evaluate=evaluate, timeout=timeout)
