"""The graph view: netron served on 127.0.0.1, offline (no consent screen, no analytics, no
expiry), with the focused layer selected; checked over HTTP and in a real headless Chromium."""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import onnx
import pytest

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.ui import netron_view
from workbench.ui.netron_view import NetronServer, NetronView

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"
MODEL = DEMO / "mnist_dsconv.onnx"
FOCUS = "/blocks/blocks.0/blocks.0.0/Conv"  # the first depthwise convolution
OTHER = "/blocks/blocks.1/blocks.1.3/Conv"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with _OPENER.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("workbench-netron-")]


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextlib.contextmanager
def _parent_page(body: str) -> Iterator[str]:
    """Serve ``body`` from another loopback origin, as JupyterLab on 127.0.0.1 would serve the
    notebook (Chromium blocks frames of loopback pages inside about:blank or public pages)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    yield
    assert not _server_threads(), "a netron server thread outlived its test"
    assert not list(netron_view._RUNNING)


@pytest.fixture
def server() -> Iterator[NetronServer]:
    with NetronServer(MODEL, title="demo (float)", focus=FOCUS) as srv:
        yield srv


@pytest.fixture(scope="module")
def qdq_model() -> onnx.ModelProto:
    session = wb.Session(MODEL, autosave=False, progress=False)
    session.calibrate(DEMO / "calib.npz", limit=32)
    return session.quantize()


# -- over HTTP -------------------------------------------------------------------------------
def test_page_and_model_are_served(server: NetronServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    status, headers, body = _get(server.url)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]  # the browser refuses other hosts
    assert '<meta name="version" content="0.0.0">' in page  # a development build: no telemetry
    assert '<meta name="date"' not in page  # no build date: never "Please update"
    assert 'src="_workbench/page.js"' in page
    assert '<meta name="file" content="/data/1/mnist_dsconv.onnx">' in page
    assert '<meta name="name" content="demo (float)">' in page

    status, _, data = _get(server.url + "data/1/mnist_dsconv.onnx")
    assert status == 200 and data == MODEL.read_bytes()
    status, _, script = _get(server.url + "_workbench/page.js")
    assert status == 200 and b"_getCookie" in script
    status, _, js = _get(server.url + "view.js")
    assert status == 200 and js == (netron_view.netron_dir() / "view.js").read_bytes()


def test_only_netron_static_files_are_served(server: NetronServer) -> None:
    for path in ("server.py", "__init__.py", "../errors.py", "%2e%2e/errors.py", "data/0/mnist_dsconv.onnx",
                 "data/1/other.onnx", "nothing.js"):
        assert _get(server.url + path)[0] == 404, path


def test_other_host_names_are_refused(server: NetronServer) -> None:
    request = urllib.request.Request(server.url, headers={"Host": f"rebound.example:{server.port}"})
    with pytest.raises(urllib.error.HTTPError, match="403"):
        _OPENER.open(request, timeout=10)
    request = urllib.request.Request(server.url + "_workbench/state", headers={"Host": f"localhost:{server.port}"})
    with _OPENER.open(request, timeout=10) as response:
        assert response.status == 200


def test_update_and_focus_reach_the_state(server: NetronServer, qdq_model: onnx.ModelProto) -> None:
    assert _get(server.url + "_workbench/state")[2] == b'{"revision": "1", "focus": "%s"}' % FOCUS.encode()
    server.update(qdq_model, name="demo.qdq.onnx", title="demo (QDQ)")
    server.set_focus(None)
    assert server.revision == 2 and server.focus is None
    assert _get(server.url + "_workbench/state")[2] == b'{"revision": "2", "focus": null}'
    assert _get(server.url + "data/1/mnist_dsconv.onnx")[0] == 404
    assert _get(server.url + "data/2/demo.qdq.onnx")[2] == qdq_model.SerializeToString()


def test_stop_frees_the_port_and_the_thread() -> None:
    srv = NetronServer(MODEL).start()
    port = srv.port
    assert _server_threads() and srv.running
    srv.stop()
    srv.stop()  # idempotent
    assert not srv.running and not _server_threads()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(WorkbenchError, match="not running"):
        _ = srv.url


def test_exit_hook_stops_running_servers() -> None:
    servers = [NetronServer(MODEL).start(), NetronServer().start()]
    netron_view._stop_all()
    assert not any(s.running for s in servers)


def test_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WorkbenchError, match="does not exist"):
        NetronServer(tmp_path / "missing.onnx")
    with pytest.raises(WorkbenchError, match="ModelProto"):
        NetronServer(42)
    for name in ("index.html", "browser.js"):
        (tmp_path / name).write_text("a netron that moved things", encoding="utf-8")
    monkeypatch.setattr(netron_view, "netron_dir", lambda: tmp_path)
    with pytest.raises(WorkbenchError, match=re.escape("install netron==9.3.3")):
        NetronServer(MODEL)


def test_view_names_the_focused_layer() -> None:
    view = NetronView(MODEL, title="demo (float)", focus=FOCUS, height=400)
    try:
        assert f'src="{view.server.url}"' in view.frame.value and "height:400px" in view.frame.value
        assert FOCUS in view.caption.value and "demo (float)" in view.caption.value
        frame = view.frame.value
        view.set_focus(OTHER)
        assert OTHER in view.caption.value and view.server.focus == OTHER
        assert view.frame.value == frame  # focus changes never reload the frame
        view.set_focus(None)
        assert "no layer in focus" in view.caption.value
    finally:
        view.close()
    assert not view.server.running


# -- in a real browser -----------------------------------------------------------------------
def test_browser_renders_offline_with_focus(browser_page, artifacts_dir: Path, server: NetronServer,
                                            qdq_model: onnx.ModelProto) -> None:
    from playwright.sync_api import expect

    page, log = browser_page
    # netron 9.3.3 as shipped loops on "Please update" 180 days after its build date
    page.clock.set_system_time(datetime.now() + timedelta(days=3 * 365))
    page.goto(server.url)

    def node(name: str):
        return page.locator(f'g[id="node-name-{name}"]')

    selected = re.compile(r"\bselect\b")
    expect(node(FOCUS)).to_have_class(selected, timeout=20_000)  # rendered and selected
    expect(page.locator("g.node")).not_to_have_count(0)
    expect(page.locator("body")).to_have_class("default")  # the graph, not a message screen
    expect(page.get_by_text("This app uses cookies")).to_have_count(0)
    expect(page.get_by_text("Please update")).to_have_count(0)
    assert _wait(lambda: server.page.get("focus") == FOCUS) and server.page["found"]

    server.set_focus(OTHER)  # from Python: the page selects the new layer within a poll
    expect(node(OTHER)).to_have_class(selected)
    expect(node(FOCUS)).not_to_have_class(selected)
    page.screenshot(path=str(artifacts_dir / "netron.png"))

    server.update(qdq_model, title="demo (QDQ)")  # the page reloads itself and keeps the focus
    expect(page).to_have_title("demo (QDQ)", timeout=20_000)
    expect(page.locator('g[id^="node-name-"][id$="/DequantizeLinear"]').first).to_be_visible()
    expect(node(OTHER)).to_have_class(selected)
    assert _wait(lambda: server.page.get("revision") == 2 and server.page.get("found"))

    server.set_focus("no such node")
    assert _wait(lambda: server.page.get("focus") == "no such node") and not server.page["found"]
    expect(page.locator("g.node.select")).to_have_count(0)

    # embedded as in the notebook: the view's iframe in another origin's page, focus by postMessage
    view = NetronView(server=server)
    with _parent_page(f"<html><body><h3>notebook</h3>{view.frame.value}</body></html>") as parent:
        page.goto(parent)
        frame = page.frame_locator("iframe")
        expect(frame.locator(f'g[id="node-name-{FOCUS}"]')).to_be_attached(timeout=20_000)
        page.evaluate("name => document.querySelector('iframe').contentWindow.postMessage("
                      "{type: 'workbench:focus', name}, '*')", FOCUS)
        expect(frame.locator(f'g[id="node-name-{FOCUS}"]')).to_have_class(selected)
        expect(frame.get_by_text("This app uses cookies")).to_have_count(0)
        page.screenshot(path=str(artifacts_dir / "netron-embedded.png"))

    assert log.external() == []
    assert log.csp_violations() == []  # nothing even tried to leave
    assert log.errors == []
    assert any("/data/2/mnist_dsconv.onnx?" in url for url in log.requests)  # the QDQ model was loaded
