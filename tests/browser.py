"""Shared set-up of the browser tests: servers, Chromium, and what a page must not show.

The tests drive Debian's Chromium (never a downloaded browser) through
pytest-playwright; ``tests/conftest.py`` points its launcher at it.  Every
server a test starts runs inside a context manager that stops it, and logs
to a file (a pipe nobody reads would fill up and block the server).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "browser"   # screenshots, for a person to look at
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "vmemlab-test"
# Requests allowed to fail offline: Voila's lab template also links Font Awesome from
# a CDN, but its own bundle carries the same fonts, so icons render without it
# (checked: the Play and qom-set icons draw with "Font Awesome 5 Free").
OFFLINE_OK = ("https://cdn.jsdelivr.net/npm/@fortawesome/",)


def require_browser() -> None:
    """Skip the calling test module, saying how to enable it, without its tools."""
    pytest.importorskip("playwright.sync_api",
                        reason="browser tests need playwright: pip install -r requirements.txt")
    if CHROMIUM is None:
        pytest.skip("browser tests need Debian's Chromium: sudo apt-get install chromium "
                    "(.ci/run installs it)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], url: str, cwd: Path, timeout: float = 90,
           env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``cmd`` until the block ends; wait until ``url`` answers first."""
    log = cwd / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd[:4])} exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[2]} did not answer at {url}") from None
                time.sleep(0.3)
        yield
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (a launcher and what it started), then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def jupyterlab(root: Path) -> Iterator[str]:
    """JupyterLab serving ``root`` with a token; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--LabApp.expose_app_in_browser=True", "--allow-root"]
    settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)      # no "get notified about news?" toast
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {"JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces")}
    with server(cmd, f"{base}/api/status?token={TOKEN}", root, env=env):
        yield base


@contextlib.contextmanager
def voila(root: Path, notebook: str) -> Iterator[str]:
    """Voilà rendering ``root/notebook`` as an app, configured by the repository's voila.json."""
    pytest.importorskip("voila", reason="needs voila (in requirements.txt)")
    shutil.copy(ROOT / "voila.json", root / "voila.json")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "voila", notebook, "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1"]
    with server(cmd, base, root):
        yield base


def lab_url(base: str, notebook: str) -> str:
    """The notebook alone in a fresh workspace (nothing restored from an earlier test)."""
    workspace = Path(notebook).stem.replace("_", "-")
    return f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={TOKEN}"


class PageProblems:
    """Collects a page's JavaScript errors (uncaught or logged) and failed requests.

    The console's "Failed to load resource" lines are judged by the request
    that failed, which names its URL.
    """

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)
        page.on("requestfailed", self._request_failed)

    def _console(self, msg) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {msg.text}")

    def _request_failed(self, request) -> None:
        if not request.url.startswith(OFFLINE_OK):
            self.errors.append(f"request failed: {request.url} ({request.failure})")

    def check(self) -> None:
        assert not self.errors, "JavaScript errors:\n" + "\n".join(self.errors)


# What JupyterLab's notebook model holds: read it rather than the DOM, which
# JupyterLab renders lazily for cells far off screen.
_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  let pending = 0, errors = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    if (cell.executionCount === null) pending++;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      if (out.output_type === 'stream' && out.name === 'stderr')
        errors.push(`cell ${i} stderr: ${[].concat(out.text).join('')}`);
    }
  }
  const kernel = panel.sessionContext.session?.kernel?.status;
  return {pending, errors, kernel, path: panel.context.path};
}"""


def run_all_cells(page, notebook: str, timeout: float = 240) -> list[str]:
    """Clear, then run every cell of ``notebook``; wait until all ran and the kernel idles.

    Returns the error outputs.  Run-all is retried while nothing starts,
    because the kernel may still be starting when the page is ready.
    """
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=90_000)
    assert page.evaluate(_CELLS_JS)["path"] == notebook, "another notebook is in front"
    page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    total = page.evaluate(_CELLS_JS)["pending"]
    for _attempt in range(3):
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = page.evaluate(_CELLS_JS)
            if state["pending"] < total or state["kernel"] == "busy":
                break
            time.sleep(0.5)
        else:
            continue
        break
    deadline = time.monotonic() + timeout
    while state["pending"] or state["kernel"] != "idle":
        assert time.monotonic() < deadline, f"cells still running after {timeout} s: {state}"
        time.sleep(0.5)
        state = page.evaluate(_CELLS_JS)
    return state["errors"]


def wait_for_change(read: Callable[[], object], before: object, what: str,
                    timeout: float = 30) -> object:
    """Poll ``read()`` until it differs from ``before``; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while (now := read()) == before:
        assert time.monotonic() < deadline, f"{what} did not change in {timeout} s"
        time.sleep(0.2)
    return now


def wait_until(read: Callable[[], object], ok: Callable[[object], bool], what: str,
               timeout: float = 60) -> object:
    """Poll ``read()`` until ``ok`` accepts it; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not ok(now := read()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}; last: {now!r}"
        time.sleep(0.2)
    return now


def screenshot(page, name: str) -> Path:
    """Save what the student sees to test-output/browser/NAME.png."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def play_and_check(page, root: str = ".vmemlab-trace-viewer") -> None:
    """Press Play on the first trace viewer: caption, heatmap and /proc pane must change.

    Then Stop (back to step 0), and step forward and back with the buttons.
    """
    viewer = page.locator(root).first
    viewer.scroll_into_view_if_needed()
    caption, image, proc = (viewer.locator(f".vmemlab-{n}").first
                            for n in ("caption", "heatmap", "proc"))
    before = caption.inner_text(), image.get_attribute("src"), proc.inner_text()
    play_buttons = viewer.locator(".widget-play button")   # play/pause, stop, repeat
    play_buttons.nth(0).click()
    wait_for_change(caption.inner_text, before[0], "the trace viewer's caption")
    wait_for_change(lambda: image.get_attribute("src"), before[1], "the heatmap image")
    wait_for_change(proc.inner_text, before[2], "the /proc pane", timeout=60)
    play_buttons.nth(1).click()
    for button, step in (("stop", 0), ("forward", 1), ("back", 0)):
        if button != "stop":
            viewer.locator(f"button:has-text('{button}')").first.click()
        wait_until(caption.inner_text, lambda t, n=step: t.startswith(f"step {n}/"),
                   f"'{button}' to show step {step}")
    image.scroll_into_view_if_needed()


def requested_size_and_check(page, steps: int = 2) -> str:
    """Move the panel's requested-size slider by keyboard, press qom-set; return the status.

    The heatmap, the subblock map and the status text must change.
    """
    panel = page.locator(".vmemlab-panel").first
    panel.scroll_into_view_if_needed()
    handle = panel.locator(".vmemlab-requested .noUi-handle").first
    value, top = (int(float(handle.get_attribute(a))) for a in ("aria-valuenow",
                                                                "aria-valuemax"))
    key = "ArrowRight" if value + steps <= top else "ArrowLeft"
    status, heatmap, subblocks = (panel.locator(f".vmemlab-{n}").first
                                  for n in ("status", "heatmap", "subblocks"))
    before = (status.inner_text(), heatmap.get_attribute("src"),
              subblocks.get_attribute("src"))
    handle.focus()
    for _ in range(steps):
        page.keyboard.press(key)
    panel.locator("button:has-text('qom-set')").first.click()
    text = wait_until(lambda: status.inner_text(), lambda t: "last action: qom-set" in t,
                      "the panel's status to report the qom-set")
    wait_for_change(lambda: heatmap.get_attribute("src"), before[1], "the panel's heatmap")
    wait_for_change(lambda: subblocks.get_attribute("src"), before[2], "the subblock map")
    heatmap.scroll_into_view_if_needed()
    return str(text)
