"""Serving the app and driving Debian's headless chromium through the DevTools protocol, for
``test_browser.py`` and ``benchmarks/app.py``. Standard library plus ``websockets`` (a Streamlit
dependency); no selenium, no driver binary.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "leaderboard" / "app.py"
CHROMIUM = os.environ.get("WARPBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
RENDER_TIMEOUT = 60.0
WIDTH, HEIGHT = 1400, 1000
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def page_paths() -> list[str]:
    """Each page's URL_PATH, in the order of ``navigation.PAGES``, read from the package's
    sources (importing the views outside a Streamlit runtime would only log warnings)."""
    package = Path(importlib.util.find_spec("warpbench_leaderboard").origin).parent

    def constant(path: Path, name: str):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(getattr(t, "id", None) == name for t in targets):
                return ast.literal_eval(node.value)
        raise LookupError(f"{name} not in {path}")

    return [constant(package / "views" / f"{name}.py", "URL_PATH")
            for name in constant(package / "navigation.py", "PAGES")]


PAGE_PATHS = page_paths()
HOME = PAGE_PATHS[0]  # the default page, which Streamlit serves at the root URL


def page_url(base: str, page: str, query: str = "") -> str:
    return f"{base}/{'' if page == HOME else page}{'?' + query if query else ''}"


# Rendering state of the page, as JSON: is the script still running, what Streamlit drew.
STATE_JS = """
(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const plots = q('[data-testid="stPlotlyChart"]');
  const main = document.querySelector('[data-testid="stMain"]');
  const app = document.querySelector('[data-testid="stApp"]');
  return JSON.stringify({
    app: !!app,
    script: app ? app.getAttribute('data-test-script-state') : null,
    skeletons: q('[data-testid="stSkeleton"]').length,
    spinners: q('[data-testid="stSpinner"]').length,
    title: (q('h1')[0] || {}).innerText || '',
    exceptions: q('[data-testid="stException"]').map(e => e.innerText.slice(0, 2000)),
    plots: plots.length,
    plotsDrawn: plots.filter(p => p.querySelector('.main-svg')).length,
    tables: q('[data-testid="stDataFrame"]').length,
    alerts: q('[data-testid="stAlertContainer"]').map(e => e.innerText.slice(0, 300)),
    tags: q('[data-testid="stMultiSelect"] .react-aria-ComboBox [data-tag]').map(
      e => e.getAttribute('aria-label')),
    selects: q('[data-testid="stSelectbox"]').map(e => {
      const input = e.querySelector('input');
      return (input && input.value) || e.innerText.trim();
    }),
    height: Math.max(document.body.scrollHeight, main ? main.scrollHeight : 0,
                     ...q('[data-testid="stAppScrollToBottomContainer"]').map(e => e.scrollHeight)),
  });
})()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


def stop(process: subprocess.Popen) -> None:
    """End a process this module started (by its own handle)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def serve(db: Path, workdir: Path, env: dict | None = None) -> Iterator[str]:
    """``streamlit run leaderboard/app.py -- --db DB`` headless on 127.0.0.1 and a free port, in
    ``workdir`` (where the pair viewer looks for datasets.yaml); yields the base URL. The server's
    output goes to ``workdir/streamlit.log`` (a pipe nobody reads could fill up and stall it)."""
    port = free_port()
    log_path = Path(workdir) / "streamlit.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
             "--server.address=127.0.0.1", f"--server.port={port}",
             "--server.fileWatcherType=none", "--browser.gatherUsageStats=false",
             "--", "--db", str(db)],
            cwd=workdir, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{base}/_stcore/health", 60, process)
        except Exception:
            log = log_path.read_text(errors="replace")
            raise RuntimeError(f"streamlit did not start:\n{log}") from None
        yield base
    finally:
        stop(process)


class DevTools:
    """The smallest client of the Chrome DevTools protocol these tools need."""

    def __init__(self, websocket_url: str):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self._socket = self._stack.enter_context(
            connect(websocket_url, max_size=None, open_timeout=30))
        self._ids = itertools.count(1)

    def call(self, method: str, **params):
        request_id = next(self._ids)
        self._socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=RENDER_TIMEOUT))
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def chromium(profile: Path | None = None) -> Iterator[DevTools]:
    """Headless chromium with a fresh profile; yields a DevTools client of its first tab."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with contextlib.ExitStack() as stack:
        if profile is None:
            profile = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wb-chromium-")))
        process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        stack.callback(stop, process)
        active = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().count("\n") >= 1):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        wait_http(f"http://127.0.0.1:{port}/json/version", 30, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")
        tools = DevTools(target["webSocketDebuggerUrl"])
        stack.callback(tools.close)
        tools.call("Page.enable")
        yield tools


def open_page(tools: DevTools, url: str, poll: float = 0.25, settle: int = 2) -> dict:
    """Navigate to ``url`` and wait until Streamlit has finished drawing it: the script is not
    running, no placeholder or spinner is left, every plotly chart has drawn its SVG, and that
    held for ``settle`` polls in a row. Returns the page's state (STATE_JS) plus ``seconds``,
    from the navigation to the first poll of the finished state."""
    tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
               deviceScaleFactor=1, mobile=False)
    start = time.perf_counter()
    tools.call("Page.navigate", url=url)
    deadline = time.monotonic() + RENDER_TIMEOUT
    calm, state, first_done = 0, {}, None
    while time.monotonic() < deadline:
        time.sleep(poll)
        state = json.loads(tools.evaluate(STATE_JS) or "{}")
        done = (state.get("app") and state.get("title") and state.get("script") == "notRunning"
                and not state.get("skeletons") and not state.get("spinners")
                and state.get("plotsDrawn") == state.get("plots"))
        if done and first_done is None:
            first_done = time.perf_counter() - start
        if not done:
            first_done = None
        calm = calm + 1 if done else 0
        if calm >= settle or state.get("exceptions"):
            state["seconds"] = first_done if first_done is not None else time.perf_counter() - start
            return state
    raise TimeoutError(f"{url} did not finish rendering in {RENDER_TIMEOUT:g} s: {state}")


def screenshot(tools: DevTools, state: dict, path: Path) -> None:
    """The whole page: the viewport is stretched to the content's height first."""
    height = int(min(max(state.get("height") or HEIGHT, HEIGHT), 8000))
    tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height,
               deviceScaleFactor=1, mobile=False)
    time.sleep(0.4)  # let charts re-layout to the new viewport
    data = tools.call("Page.captureScreenshot", format="png")["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))
