"""Headless Chromium driven over the DevTools protocol: load a page, collect its console errors, query its DOM,
take a screenshot. For the status page test, and as a script for the README's screenshot::

    .venv/bin/python -m tests.helpers.chromium http://127.0.0.1:9868/ docs/status-page.png

The protocol (https://chromedevtools.github.io/devtools-protocol/): one WebSocket to the browser, a page target
attached with ``flatten`` so its commands carry a ``sessionId``. Console errors are every ``Runtime.consoleAPICalled``
of type error or assert, every ``Runtime.exceptionThrown`` and every ``Log.entryAdded`` of level error (this one
also reports resources that failed to load), so a page "loads with no console error" only if all three stay empty.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

from vzkeep.processes import stop_process

# The flags the project asks for: no sandbox (containers), no GPU, and nothing that talks to the network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*")
STARTUP_SECONDS = 30.0
COMMAND_SECONDS = 30.0
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


@dataclass
class Page:
    """A loaded page: its console errors, and commands on its session."""

    browser: Browser
    session: str
    errors: list[str] = field(default_factory=list)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results only)."""
        result = self.browser.command("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                      self.session)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        """The whole page as a PNG at ``path``."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.browser.command("Emulation.setDeviceMetricsOverride",
                             {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, self.session)
        data = self.browser.command("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Browser:
    """One headless Chromium process and its DevTools WebSocket."""

    def __init__(self, binary: str, profile: Path) -> None:
        # A session of its own: its renderer and utility processes share its process group, so close() can
        # wait for all of them to leave the profile before it is removed.
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.socket = websocket.create_connection(self._endpoint(), timeout=COMMAND_SECONDS, suppress_origin=True)
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def _endpoint(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        assert self.process.stderr is not None
        seen = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            seen.append(line)
            if found := _LISTENING.search(line):
                return found.group(1)
        raise RuntimeError(f"chromium did not open its DevTools port: {''.join(seen)[-2000:]}")

    def command(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = COMMAND_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    self._events.remove(event)
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout:.0f} s")
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self._events.append(json.loads(self.socket.recv()))
            except websocket.WebSocketTimeoutException:
                continue

    def open(self, url: str, settle: float = 0.5) -> Page:
        """Load ``url`` in a new tab and wait for its load event, then ``settle`` seconds for late errors."""
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.command(f"{domain}.enable", session=session)
        self.command("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        self.socket.settimeout(settle)
        try:
            while True:
                self._events.append(json.loads(self.socket.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        self.socket.settimeout(COMMAND_SECONDS)
        return Page(self, session, [e for e in (_console_error(ev) for ev in self._events
                                                if ev.get("sessionId") == session) if e])

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            stop_process(self.process)
            _stop_group(self.process.pid)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count: they hold no file open)."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _stop_group(pgid: int, grace: float = 10.0) -> None:
    """Chromium's helper processes outlive the browser by a moment and still write to the profile: SIGTERM
    the group, wait for it to empty (bounded), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _console_error(event: dict[str, Any]) -> str | None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if method == "Runtime.exceptionThrown":
        return "exception: " + str(params.get("exceptionDetails", {}).get("text"))
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip()
    return None


@contextmanager
def browser(binary: str | None = None) -> Iterator[Browser]:
    """A headless Chromium with a throwaway profile."""
    found = binary or shutil.which("chromium")
    if found is None:
        raise FileNotFoundError("chromium is not installed (Debian package chromium, see .ci/run)")
    with tempfile.TemporaryDirectory(prefix="vzkeep-chromium-") as profile:
        running = Browser(found, Path(profile))
        try:
            yield running
        finally:
            running.close()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.helpers.chromium URL OUT.png   "
                 "(e.g. the status page of a running `vzkeep exporter`)")
    with browser() as chrome:
        page = chrome.open(sys.argv[1])
        for error in page.errors:
            print(f"console error: {error}", file=sys.stderr)
        print(page.screenshot(Path(sys.argv[2])))


if __name__ == "__main__":
    main()
