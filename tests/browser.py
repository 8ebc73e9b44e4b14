"""A page opened in headless Chromium (Debian's `chromium`) through the DevTools protocol: what
the page logged as errors, what its script reads off the DOM, a full-page screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.ws.settimeout(max(0.1, deadline - time.time()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(str(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out


def _first_line(path: str) -> str:
    """The file's first line ('' while chromium has not written it)."""
    try:
        with open(path) as f:
            return f.readline().strip()
    except FileNotFoundError:
        return ""


def open_page(path: str, screenshot: str | None = None, width: int = 1200):
    """Loads file `path`; returns (page, seconds until its load event). The browser stays open
    until the page's websocket is closed (`close(page)`)."""
    import websocket  # websocket-client

    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        + [f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 60
    while not (port := _first_line(port_file)):
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("chromium did not start")
        time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
        target = next(t for t in json.load(r) if t["type"] == "page")
    page = Page(
        websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
    )
    page.proc, page.profile = proc, profile
    for domain in ("Page", "Runtime", "Log"):
        page.call(f"{domain}.enable")
    page.call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    start = time.time()
    page.call("Page.navigate", url="file://" + os.path.abspath(path))
    page.wait_for("Page.loadEventFired")
    seconds = time.time() - start
    if screenshot:
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    return page, seconds


def close(page: Page) -> None:
    page.ws.close()
    page.proc.terminate()
    try:
        page.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        page.proc.kill()
    shutil.rmtree(page.profile, ignore_errors=True)
