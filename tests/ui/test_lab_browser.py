"""The workbench in a real JupyterLab in a real (headless) Chromium.

JupyterLab runs on 127.0.0.1 with the token off, in a temp folder holding a copy of the
quick-start notebook and the demo; the notebook's cells run in the browser; the workbench must
render with its histogram (BokehJS loaded INLINE — offline, a CDN load would leave an error
widget); typing a new clip threshold must change both the readout and the plot. Screenshots
are kept in ``test-artifacts/``.
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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "01_quickstart.ipynb", root / "notebooks")
    shutil.copytree(ROOT / "assets" / "demo", root / "assets" / "demo")
    port = _free_port()
    news = root / ".set" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about news?" toast over the page
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".cfg"), "JUPYTERLAB_SETTINGS_DIR": str(root / ".set"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".ws"), "JUPYTER_RUNTIME_DIR": str(root / ".rt"),
           "WORKBENCH_AUTOSAVE_DIR": str(root / ".autosave"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           *(["--allow-root"] if os.geteuid() == 0 else [])]
    with open(root / "lab.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernels (one process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_quickstart_workbench_renders_and_responds(lab, browser_page, artifacts_dir):
    page, log = browser_page
    page.set_default_timeout(120_000)
    page.goto(f"{lab}/lab/tree/notebooks/01_quickstart.ipynb")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    readout = page.locator(".widget-html-content", has_text="SQNR estimate").first
    readout.wait_for(state="visible", timeout=180_000)
    plot = page.locator(".jupyter-widgets .bk-Figure, .jupyter-widgets .bk-root, .jupyter-widgets canvas").first
    plot.wait_for(state="visible")
    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # let BokehJS paint
    assert page.locator(".jupyter-widgets canvas").count() > 0  # BokehJS drew (locators pierce shadow DOM)
    assert not page.locator("text=Error displaying widget").count()
    before_text = readout.inner_text()
    hi = page.locator(".widget-text:has(label:text-is('hi')) input").first
    before_plot = plot.screenshot()
    page.screenshot(path=str(artifacts_dir / "workbench-before.png"), full_page=False)

    old = float(hi.input_value())
    hi.fill(f"{old / 4:.6g}")
    hi.press("Enter")
    page.wait_for_function("(t) => { const e = [...document.querySelectorAll('.widget-html-content')]"
                           ".find(x => x.innerText.includes('SQNR estimate')); return e && e.innerText !== t; }",
                           arg=before_text, timeout=60_000)
    page.wait_for_timeout(1000)
    after_text = readout.inner_text()
    after_plot = plot.screenshot()
    page.screenshot(path=str(artifacts_dir / "workbench-after.png"), full_page=False)
    assert after_text != before_text and "clipped" in after_text
    assert after_plot != before_plot, "the clip lines/shading on the histogram did not move"
    assert not log.errors, log.errors
