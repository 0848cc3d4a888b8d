"""Shared set-up of the browser tests: one JupyterLab server, Chromium, bounded waits.

The tests drive Debian's Chromium (never a downloaded browser) through
pytest-playwright; ``tests/conftest.py`` points its launcher at it and
holds the session's fixtures: one JupyterLab server (configured by the
lab's own ``jupyter-config/``, as ``python3 lab.py`` and Binder are) over a
copy of the notebooks, and one browser page with JupyterLab loaded, in
which each test opens its notebook.  Voila pages are rendered by the same
server's Voila extension, at the route the README advertises.

Nothing here waits without a bound: every wait polls a condition until a
deadline, every call into the page goes through :func:`js` (which has a
timeout), and every server runs in a context manager that stops its whole
process group and dies with the test process (``PR_SET_PDEATHSIG``).  A
test that still hangs is stopped by the per-test timeout (pyproject.toml,
pytest-timeout) and, failing that, by the hard stop in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
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
CONFIG = ROOT / "jupyter-config"            # what lab.py and binder/start give Jupyter
OUTPUT = ROOT / "test-output" / "browser"   # screenshots, for a person to look at
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
TOKEN = "vmemlab-test"
# Test-only: kernels left without a page are culled after this many seconds
# (the shipped jupyter-config culls after 600 s; the mechanism is the same).
CULL_IDLE, CULL_INTERVAL = 30, 5
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


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def poll(read: Callable[[], object], ok: Callable[[object], bool], what: str,
         timeout: float, every: float = 0.3) -> object:
    """Call ``read()`` until ``ok`` accepts its value; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ok(now := read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}; last: {now!r}")
        time.sleep(every)
    return now


def wait_for_change(read: Callable[[], object], before: object, what: str,
                    timeout: float = 60) -> object:
    """Poll ``read()`` until it differs from ``before``; fail naming ``what``."""
    return poll(read, lambda now: now != before, f"{what} to change", timeout, 0.2)


def wait_until(read: Callable[[], object], ok: Callable[[object], bool], what: str,
               timeout: float = 90) -> object:
    """Poll ``read()`` until ``ok`` accepts it; fail naming ``what``."""
    return poll(read, ok, what, timeout, 0.2)


def get_json(url: str, timeout: float = 10) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.load(reply)


@contextlib.contextmanager
def server(cmd: list[str], url: str, cwd: Path, timeout: float = 180,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` until the block ends; wait until ``url`` answers first."""
    log = cwd / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True,
                                preexec_fn=_die_with_parent)
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd[:4])} exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                return True
            except OSError:
                return False
        poll(answers, bool, f"{' '.join(cmd[:4])} to answer at {url}", timeout)
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (a launcher and what it started), then KILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def jupyter_env(home: Path) -> dict[str, str]:
    """The lab's configuration, with settings, workspaces and data kept under ``home``."""
    return {"JUPYTER_CONFIG_PATH": str(CONFIG),
            "JUPYTERLAB_SETTINGS_DIR": str(home / ".lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / ".lab-workspaces"),
            "JUPYTER_DATA_DIR": str(home / ".jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(home / ".jupyter-runtime")}


@contextlib.contextmanager
def jupyterlab(root: Path) -> Iterator[str]:
    """JupyterLab (with Voila's extension) serving ``root`` as the lab does; yields its URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.expose_app_in_browser=True", "--allow-root",
           f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE}",
           f"--MappingKernelManager.cull_interval={CULL_INTERVAL}"]
    with server(cmd, f"{base}/api/status?token={TOKEN}", root, env=jupyter_env(root)):
        yield base


def kernels(base: str) -> list[str]:
    """Ids of the kernels the server runs."""
    return [k["id"] for k in get_json(f"{base}/api/kernels?token={TOKEN}")]


def end_sessions(base: str, kernel_ids: set[str]) -> None:
    """Delete the server's sessions of these kernels, which shuts the kernels down."""
    for session in get_json(f"{base}/api/sessions?token={TOKEN}"):
        if session["kernel"]["id"] in kernel_ids:
            request = urllib.request.Request(
                f"{base}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE")
            with contextlib.suppress(OSError):   # already gone
                urllib.request.urlopen(request, timeout=60).close()


def voila_url(base: str, path: str) -> str:
    """The Voila app route of the README (and Binder's ``urlpath=voila/render/...``)."""
    return f"{base}/voila/render/{path}?token={TOKEN}"


def lab_url(base: str, notebook: str) -> str:
    """``notebook`` alone in a fresh JupyterLab workspace (for a test with its own page)."""
    workspace = Path(notebook).stem.replace("_", "-")
    return f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={TOKEN}"


@contextlib.contextmanager
def voila(root: Path, notebook: str) -> Iterator[str]:
    """A server of its own showing ``root/notebook`` as a Voila app; yields the app's URL.

    (Tests on the shared server use ``voila_url(lab_server, path)`` instead.)
    """
    with jupyterlab(root) as base:
        yield voila_url(base, notebook)


class PageProblems:
    """Collects a page's JavaScript errors (uncaught or logged) and failed requests.

    The console's "Failed to load resource" lines are judged by the request
    that failed, which names its URL.  Used as a context manager it listens
    only inside the block (the lab page outlives each test).
    """

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        self._handlers = {"pageerror": lambda exc: self.errors.append(f"uncaught: {exc}"),
                          "console": self._console, "requestfailed": self._request_failed}
        for event, handler in self._handlers.items():
            page.on(event, handler)

    def __enter__(self) -> PageProblems:
        return self

    def __exit__(self, *exc) -> None:
        for event, handler in self._handlers.items():
            self.page.remove_listener(event, handler)

    def _console(self, msg) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {msg.text}")

    def _request_failed(self, request) -> None:
        if not request.url.startswith(OFFLINE_OK):
            self.errors.append(f"request failed: {request.url} ({request.failure})")

    def check(self) -> None:
        assert not self.errors, "JavaScript errors:\n" + "\n".join(self.errors)


def js(page, function: str, arg: object = None, timeout: float = 60) -> object:
    """``function(arg)`` evaluated in the page, its (JSON) value; fails after ``timeout`` s.

    Playwright's ``evaluate`` has no timeout, and awaits a returned promise;
    ``wait_for_function`` has one, so the call goes through it.  Functions
    given here must not return promises (fire a command, then poll).
    """
    handle = page.wait_for_function(f"(arg) => ({{value: ({function})(arg)}})", arg=arg,
                                    polling=100, timeout=timeout * 1000)
    return handle.json_value()["value"]


# What JupyterLab's notebook model holds: read it rather than the DOM, which
# JupyterLab renders lazily for cells far off screen.  Empty code cells are
# never sent to the kernel, so they are not counted.
_STATE_JS = """(path) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const front = panel?.context?.path ?? null;
  if (front !== path || !panel.content?.model || !panel.sessionContext) return {front};
  const cells = panel.content.model.cells;
  let code = 0, done = 0, running = 0;
  const errors = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code' || !cell.sharedModel.getSource().trim()) continue;
    code++;
    if (cell.executionState === 'running') running++;
    else if (cell.executionCount !== null) done++;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      if (out.output_type === 'stream' && out.name === 'stderr')
        errors.push(`cell ${i} stderr: ${[].concat(out.text).join('')}`);
    }
  }
  const kernel = panel.sessionContext.session?.kernel;
  return {front, code, done, running, errors, kernel: kernel?.status ?? null,
          connection: kernel?.connectionStatus ?? null};
}"""
_COMMAND_JS = """([command, args]) => {
  window.jupyterapp.commands.execute(command, args);   // not awaited: run-all resolves at the end
  return true;
}"""
# Documents only: JupyterLab opens a Launcher whenever the main area empties.
_CLOSE_ALL_JS = """() => {
  const app = window.jupyterapp, ids = [];
  for (const w of Array.from(app.shell.widgets('main')).filter(w => w.context)) {
    const kernel = w.sessionContext?.session?.kernel;
    if (kernel) ids.push(kernel.id);
    w.context.model.dirty = false;     // no "save changes?" dialog
    w.dispose();
  }
  return ids;
}"""
_TABS_JS = "() => Array.from(window.jupyterapp.shell.widgets('main')).filter(w => w.context).length"
_RESTORED_JS = """() => {
  window.jupyterapp.restored.then(() => { window.vmemlabRestored = true; });
  return true;
}"""


def command(page, name: str, args: dict | None = None) -> None:
    """Start a JupyterLab command without waiting for it to finish."""
    js(page, _COMMAND_JS, [name, args or {}])


def notebook_state(page, path: str) -> dict:
    """What the notebook ``path``, which must be in front, has run, and its kernel's state."""
    state = js(page, _STATE_JS, path)
    assert isinstance(state, dict) and "code" in state, f"{path} is not in front: {state}"
    return state


def _ready(state: dict) -> bool:
    return state.get("kernel") == "idle" and state.get("connection") == "connected"


def run_all_cells(page, path: str, timeout: float = 480, retry_after: float = 20) -> list[str]:
    """Clear, then run every cell of the notebook ``path`` in front; return the error outputs.

    Waits (bounded) for its kernel to be idle and connected, then sends Run
    All, and sends it again every ``retry_after`` seconds while no cell has
    started (none running, none with an execution count) and the kernel is
    idle: a Run All sent while the kernel was still starting can be lost.
    Done when no cell runs, the kernel is idle, and every code cell ran or
    one failed; seen twice in a row.
    """
    deadline = time.monotonic() + timeout
    poll(lambda: notebook_state(page, path), _ready,
         f"{path}'s kernel to be idle and connected", min(240, timeout))
    command(page, "notebook:clear-all-cell-outputs")
    poll(lambda: notebook_state(page, path), lambda s: s["done"] == s["running"] == 0,
         f"{path}'s outputs to clear", 60)
    sent = 0.0
    while True:
        state = notebook_state(page, path)
        if state["running"] or state["done"]:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"Run All never started {path} in {timeout} s: {state}")
        if state.get("kernel") == "idle" and time.monotonic() - sent > retry_after:
            command(page, "notebook:run-all-cells")
            sent = time.monotonic()
        time.sleep(0.5)

    def finished(s: dict) -> bool:
        return (not s["running"] and s["kernel"] == "idle"
                and (s["done"] == s["code"] or bool(s["errors"])))

    seen = 0
    while seen < 2:
        state = notebook_state(page, path)
        seen = seen + 1 if finished(state) else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: cells still running after {timeout} s: {state}")
        time.sleep(0.5)
    return state["errors"]


class Lab:
    """One page with JupyterLab loaded, in which tests open notebooks one after another."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.load()

    def load(self) -> None:
        """(Re)load JupyterLab in a fresh workspace and wait until it has restored."""
        self.page.goto(f"{self.base}/lab/workspaces/tests?reset&token={TOKEN}",
                       wait_until="domcontentloaded", timeout=180_000)
        self.page.wait_for_function("() => window.jupyterapp?.restored !== undefined",
                                    polling=200, timeout=180_000)
        js(self.page, _RESTORED_JS)
        self.page.wait_for_function("() => window.vmemlabRestored === true", polling=200,
                                    timeout=180_000)

    def open(self, path: str, timeout: float = 240) -> None:
        """Close what is open (shutting its kernels down), then open ``path`` in front.

        If the page no longer answers as it should, JupyterLab is loaded afresh once.
        """
        try:
            self.close_all()
        except Exception:      # a page left broken by an earlier test: start clean
            self.load()
            self.close_all()
        command(self.page, "docmanager:open", {"path": path, "factory": "Notebook"})
        poll(lambda: js(self.page, _STATE_JS, path), lambda s: "code" in s,
             f"{path} to open in JupyterLab", timeout)

    def close_all(self, timeout: float = 90) -> None:
        """Close every document and shut its kernel down; wait until the server stopped them."""
        ids = set(js(self.page, _CLOSE_ALL_JS))
        poll(lambda: js(self.page, _TABS_JS), lambda n: n == 0, "JupyterLab's documents to close",
             timeout)
        end_sessions(self.base, ids)
        poll(lambda: ids & set(kernels(self.base)), lambda left: not left,
             "the closed notebooks' kernels to shut down", timeout)

    def run(self, path: str) -> list[str]:
        """Open ``path``, run all its cells; the error outputs."""
        self.open(path)
        return run_all_cells(self.page, path)


def screenshot(page, name: str) -> Path:
    """Save what the student sees to test-output/browser/NAME.png."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), timeout=60_000)
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
    wait_for_change(proc.inner_text, before[2], "the /proc pane", timeout=90)
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
