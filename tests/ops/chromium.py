"""Drive headless Chromium over the DevTools protocol on a pipe: no dependency.

Chromium's ``--dump-dom``/``--screenshot`` flags cannot send an ``Authorization``
header, wait for a page to refresh itself, or emulate a phone, and Selenium or
Playwright would each add a package (and Playwright its own browser download).
``--remote-debugging-pipe`` gives the whole protocol over two file descriptors
(Chromium reads commands on fd 3 and answers on fd 4, NUL-terminated JSON), so a
page can be driven with the standard library alone.

Example::

    with Chromium() as browser:
        page = browser.open_page(headers={"Authorization": "Bearer ..."})
        page.navigate("http://127.0.0.1:8000/ops")
        page.evaluate("document.title")
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any

#: Debian's package installs ``chromium``; other systems name it differently.
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def _high(fd: int) -> int:
    """The same pipe end on a descriptor number of 10 or more (closing the original)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class ChromiumError(Exception):
    pass


class Chromium:
    def __init__(self, executable: str | None = None, *, timeout: float = 30.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise ChromiumError("chromium is not installed (apt-get install chromium)")
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="ops-chromium-")
        # NOTE: the child's ends are moved to fds >= 10 first: dup2(3, 3) would keep an fd
        # that is closed on exec, and dup2(x, 3) must not overwrite the other end.
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _high(to_chrome_r), _high(from_chrome_w)

        def wire_fds() -> None:  # runs in the child: its fd 3 reads, fd 4 writes
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.process = subprocess.Popen(
            [
                self.executable,
                "--headless=new",
                "--no-sandbox",  # the tests may run as root
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(ChromiumError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        shutil.rmtree(self._profile, ignore_errors=True)

    # --- the protocol -------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChromiumError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], remaining)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise ChromiumError("chromium closed its pipe")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None) -> Any:
        """Call ``method`` and return its result; raise :class:`ChromiumError` on an error."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise ChromiumError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self._events.append(answer)

    def wait_event(self, method: str, *, session: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            for index, event in enumerate(self._events):
                if event["method"] == method and (
                    session is None or event.get("sessionId") == session
                ):
                    return self._events.pop(index)
            answer = self._read_message(deadline)
            if "method" in answer:
                self._events.append(answer)

    def open_page(
        self,
        *,
        headers: dict[str, str] | None = None,
        width: int = 412,
        height: int = 915,
        mobile: bool = True,
    ) -> Page:
        """A new tab, optionally sending ``headers`` with every request and sized like a phone."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Network.enable")
        if headers:
            page.call("Network.setExtraHTTPHeaders", {"headers": headers})
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        return page


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict | None = None) -> Any:
        return self.browser.send(method, params, session=self.session)

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", session=self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise ChromiumError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: str) -> str:
        """Save a PNG of the whole page (beyond the viewport) to ``path``; return it."""
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as file:
            file.write(base64.b64decode(data["data"]))
        return path
