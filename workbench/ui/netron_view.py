"""The graph view: netron showing a float or QDQ ONNX model, served on 127.0.0.1, in the notebook.

netron 9.3 is not usable offline as shipped. :class:`NetronServer` serves netron's own static
files (read from the installed package, never modified) through a small HTTP handler of ours
that changes only the page it hands out:

* **Consent screen.** Unless a ``consent`` (or ``_ga``) cookie exists, netron asks
  ``https://ipinfo.io`` where the user is and then blocks the page with "This app uses
  cookies…". Its Accept button writes the cookie with ``domain=.0.1`` on 127.0.0.1, which the
  browser rejects, so the screen would return on every load (and a frame on another port may
  not keep cookies at all). Our page script (``/_workbench/page.js``, loaded right after
  netron's ``index.js``) wraps ``window.exports.preload`` so that, once netron's ``browser``
  module is loaded and before its ``Host`` is created, ``Host._getCookie('consent')`` answers
  yes. No cookie is involved, and ipinfo.io is never asked.
* **Analytics.** Google Analytics beacons and error reports start only for a *packaged* build:
  the page is served as version ``0.0.0`` (netron's development build), so telemetry never
  starts. Belt and braces, the page comes with a ``Content-Security-Policy`` header allowing
  only ``'self'``, ``data:`` and ``blob:``: the browser refuses any request to another host.
* **Expiry.** The page carries its build date (``<meta name="date">``) and, 180 days after it,
  loops on "Please update to the newest version". It is served without that tag, which netron
  reads as "built now" (the browser's own clock), so a pinned netron keeps working.
* **Focus.** netron has no URL parameter or message for selecting a node. Its SVG node ids are
  ``node-name-<ONNX node name>``; the page script polls ``/_workbench/state`` (every 0.4 s) for
  the model revision and the focused node, selects and centres that node through netron's own
  view (``target.select`` + ``target.scrollTo``), reloads when the model changes, and reports
  what it did to ``/_workbench/ack`` (readable as :attr:`NetronServer.page`). A parent page may
  also post ``{type: 'workbench:focus', name}`` to the frame.
* netron replaces ``window.eval`` with a throwing function (left as is): drive the page with
  Playwright locators rather than ``page.evaluate``.

The patches are string substitutions checked when the server starts (netron is pinned to
9.3.3; another version that moved them raises :class:`~workbench.errors.WorkbenchError`).
Servers bind 127.0.0.1 only (and answer only requests addressed to a loopback name, against DNS
rebinding), run in a daemon thread, and are stopped by :meth:`NetronServer.stop`, the ``with``
block, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import html
import http.server
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
import weakref
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

__all__ = ["NETRON_VERSION", "NetronServer", "NetronView"]

NETRON_VERSION = "9.3.3"  # the version whose page the patches below were written for
_log = logging.getLogger(__name__)
HOST = "127.0.0.1"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
POLL_MS = 400
CSP = "default-src 'self' data: blob:; script-src 'self'; style-src 'self' 'unsafe-inline'"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css",
          ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon", ".svg": "image/svg+xml",
          ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf"}
_VERSION_META = re.compile(r'<meta name="version" content="[^"]*">')
_DATE_META = re.compile(r'<meta name="date" content="[^"]*">')
_INDEX_SCRIPT = '<script type="text/javascript" src="index.js"></script>'
_BROWSER_HOOKS = ("_getCookie('consent')", "packaged: this._meta.version", "this._meta.date[0] ? new Date(",
                  "window.exports.browser = browser")

PAGE_JS = """// workbench: netron offline (consent answered, no telemetry) and node focus (workbench/ui/netron_view.py)
(function () {
    'use strict';
    const meta = (name) => {
        const element = document.querySelector(`meta[name="${name}"]`);
        return element ? element.getAttribute('content') : null;
    };
    const revision = meta('workbench-revision');
    const preload = window.exports.preload;
    window.exports.preload = (callback) => preload((value, error) => {
        const browser = window.exports.browser;
        if (!error && browser && browser.Host) {
            const getCookie = browser.Host.prototype._getCookie;
            browser.Host.prototype._getCookie = function (name) {
                return getCookie.call(this, name) || (name === 'consent' ? 'workbench' : '');
            };
        }
        callback(value, error);
    });
    let asked;  // the focus the server asked for last
    let wanted = null;
    let applied = null;  // [target, key] of the last selection made
    const apply = () => {
        const view = window.__view__;
        const target = view ? view.target : null;
        if (!target || !target._table) {
            return;  // no graph rendered yet
        }
        let selection = null;
        if (wanted) {
            const id = `node-name-${wanted}`;
            for (const [value, element] of target._table) {
                if (element && element.id === id) {
                    selection = [value];
                    break;
                }
            }
        }
        const key = JSON.stringify([wanted, selection !== null]);
        if (applied && applied[0] === target && applied[1] === key) {
            return;
        }
        applied = [target, key];
        const elements = target.select(selection);
        if (elements && elements.length > 0) {
            target.scrollTo(elements, 'instant');
        }
        const query = new URLSearchParams({ revision, focus: wanted || '', found: selection ? '1' : '0' });
        fetch(`/_workbench/ack?${query}`, { cache: 'no-store' }).catch(() => {});
    };
    const poll = async () => {
        let delay = __POLL_MS__;
        try {
            const response = await fetch('/_workbench/state', { cache: 'no-store' });
            const state = await response.json();
            if (String(state.revision) !== revision) {
                window.location.reload();
                return;
            }
            if (state.focus !== asked) {
                asked = state.focus;
                wanted = state.focus;
            }
        } catch {
            delay = 5000;  // server stopped: keep the graph, ask again later
        }
        apply();
        window.setTimeout(poll, delay);
    };
    window.addEventListener('message', (event) => {
        const data = event.data;
        if (data && data.type === 'workbench:focus') {
            wanted = typeof data.name === 'string' && data.name ? data.name : null;
            apply();
        }
    });
    window.addEventListener('load', () => poll());
})();
""".replace("__POLL_MS__", str(POLL_MS))


def netron_dir() -> Path:
    """Directory of the installed netron package (its static web app)."""
    spec = importlib.util.find_spec("netron")
    if spec is None or not spec.submodule_search_locations:
        raise WorkbenchError(f"the graph view needs netron; install it with pip install netron=={NETRON_VERSION}")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _model_bytes(model: Any) -> bytes:
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise WorkbenchError(f"model file {str(path)!r} does not exist; pass an .onnx path or a ModelProto")
        return path.read_bytes()
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise WorkbenchError(f"cannot show a {type(model).__name__} as a graph; pass an onnx.ModelProto, bytes or a path")


def _safe_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(name)) or "model.onnx"
    return name if name.lower().endswith(".onnx") else f"{name}.onnx"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        owner = self.server.owner
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        host = urllib.parse.urlsplit(f"//{self.headers.get('Host', '')}").hostname
        if host not in _LOOPBACK_NAMES:  # a page whose DNS name was rebound to 127.0.0.1 reads nothing
            self._send(403, None, b"")
        elif path in ("/", "/index.html"):
            self._send(200, _TYPES[".html"], owner._page(), csp=True)
        elif path == "/_workbench/page.js":
            self._send(200, _TYPES[".js"], PAGE_JS.encode())
        elif path == "/_workbench/state":
            self._send(200, _TYPES[".json"], json.dumps(owner._state()).encode())
        elif path == "/_workbench/ack":
            owner._ack(dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)))
            self._send(204, None, b"")
        elif path.startswith("/data/"):
            data = owner._data(path[len("/data/"):])
            self._send(*((200, "application/octet-stream", data) if data is not None else (404, None, b"")))
        else:
            found = owner._static(path)
            self._send(*((200, _TYPES[found.suffix], found.read_bytes()) if found else (404, None, b"")))

    def _send(self, status: int, ctype: str | None, body: bytes, *, csp: bool = False) -> None:
        try:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if csp:
                self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (reload, closed frame)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: NetronServer, port: int) -> None:
        self.owner = owner
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a dropped connection is not worth a traceback
            _log.exception("graph view: a request from %s failed", client_address)


_RUNNING: weakref.WeakSet[NetronServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


class NetronServer:
    """netron serving one ONNX model on ``http://127.0.0.1:<free port>/`` from a daemon thread.

    ``model``: an ``onnx.ModelProto``, its bytes or a path (or None: netron's open-file page).
    :meth:`update` swaps the model (open pages reload), :meth:`set_focus` selects a node by
    its ONNX name in every open page. Use as a context manager, or call :meth:`stop`.
    """

    def __init__(self, model: Any = None, *, name: str = "model.onnx", title: str | None = None,
                 focus: str | None = None, port: int = 0) -> None:
        self._root = netron_dir()
        self._index = self._check_netron()
        self._port = port
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._revision = 0
        self._data_bytes: bytes | None = None
        self._name = _safe_name(name)
        self._title = title
        self._focus = focus or None
        self.page: dict[str, Any] = {}  # what the last page reported: revision, focus, found, time
        if model is not None:
            self.update(model, name=os.fspath(model) if isinstance(model, str | os.PathLike) else None)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> NetronServer:
        """Start serving (no-op when running); returns self."""
        with self._lock:
            if self._httpd is None:
                self._httpd = _HTTPServer(self, self._port)
                self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                                name=f"workbench-netron-{self.port}", daemon=True)
                self._thread.start()
                _RUNNING.add(self)
        return self

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        _RUNNING.discard(self)

    def __enter__(self) -> NetronServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise WorkbenchError("the netron server is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/`` (the server must be running)."""
        return f"http://{HOST}:{self.port}/"

    # -- state -----------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Increases with every :meth:`update`; open pages reload when it changes."""
        return self._revision

    @property
    def focus(self) -> str | None:
        """Name of the node selected in open pages (None: no selection)."""
        return self._focus

    @property
    def title(self) -> str | None:
        """What netron names the model (its page title); None: the file name."""
        return self._title

    def update(self, model: Any, *, name: str | None = None, title: str | None = None) -> None:
        """Serve ``model`` instead (open pages reload within a poll interval)."""
        data = _model_bytes(model)
        with self._lock:
            self._data_bytes = data
            if name is not None:
                self._name = _safe_name(name)
            if title is not None:
                self._title = title
            self._revision += 1

    def set_focus(self, node: str | None) -> None:
        """Select and centre the node named ``node`` (an ONNX node name: a workbench layer) in
        open pages; None clears the selection."""
        with self._lock:
            self._focus = node or None

    # -- served content (called from the handler threads) ----------------------------------
    def _check_netron(self) -> str:
        index = (self._root / "index.html").read_text(encoding="utf-8")
        browser = (self._root / "browser.js").read_text(encoding="utf-8")
        if not (_VERSION_META.search(index) and _DATE_META.search(index) and _INDEX_SCRIPT in index
                and all(hook in browser for hook in _BROWSER_HOOKS)):
            try:
                version = importlib.metadata.version("netron")
            except importlib.metadata.PackageNotFoundError:
                version = "?"
            raise WorkbenchError(f"netron {version}: its page differs from netron {NETRON_VERSION}'s, which the "
                                 f"offline graph view patches; install netron=={NETRON_VERSION}")
        return index

    def _page(self) -> bytes:
        with self._lock:
            revision, name, title, has_model = self._revision, self._name, self._title, self._data_bytes is not None
        meta = ['<meta name="type" content="Python">', '<meta name="version" content="0.0.0">',
                f'<meta name="workbench-revision" content="{revision}">']
        if has_model:
            meta += [f'<meta name="file" content="/data/{revision}/{name}">',
                     f'<meta name="identifier" content="{html.escape(name)}">']
            if title:
                meta.append(f'<meta name="name" content="{html.escape(title)}">')
        page = _VERSION_META.sub(lambda _: "\n".join(meta), self._index, count=1)
        page = _DATE_META.sub("", page, count=1)
        page = page.replace(_INDEX_SCRIPT, f'{_INDEX_SCRIPT}\n<script type="text/javascript" '
                                           'src="_workbench/page.js"></script>', 1)
        return page.encode("utf-8")

    def _static(self, path: str) -> Path | None:
        """A file of netron's web app (top level of the package, known types only), or None."""
        try:
            file = (self._root / path.lstrip("/")).resolve()
        except (OSError, ValueError):
            return None
        return file if file.parent == self._root and file.suffix in _TYPES and file.is_file() else None

    def _state(self) -> dict[str, Any]:
        with self._lock:
            return {"revision": str(self._revision), "focus": self._focus}

    def _data(self, rest: str) -> bytes | None:
        with self._lock:
            return self._data_bytes if rest == f"{self._revision}/{self._name}" else None

    def _ack(self, query: dict[str, str]) -> None:
        self.page = {"revision": int(query.get("revision") or 0), "focus": query.get("focus") or None,
                     "found": query.get("found") == "1", "time": time.time()}


def _frame(url: str, height: int) -> str:
    return (f'<iframe src="{html.escape(url)}" title="netron graph view" style="width:100%;height:{int(height)}px;'
            'border:1px solid #ddd;border-radius:4px"></iframe>')


class NetronView:
    """The graph in the notebook: a caption naming the model and the focused layer above a
    frame of a :class:`NetronServer` (started here, stopped by :meth:`close`). ``widget`` is
    the ``ipywidgets.VBox`` to place in a layout; the frame never reloads on focus changes."""

    def __init__(self, model: Any = None, *, title: str | None = None, focus: str | None = None, height: int = 560,
                 server: NetronServer | None = None) -> None:
        import ipywidgets as widgets

        self.server = server if server is not None else NetronServer(title=title)
        if model is not None:
            self.server.update(model, title=title)
        if focus is not None:
            self.server.set_focus(focus)
        self.server.start()
        self.title = title or self.server.title or "model"
        self.caption = widgets.HTML()
        self.frame = widgets.HTML(_frame(self.server.url, height))
        self.widget = widgets.VBox([self.caption, self.frame])
        self._caption()

    def set_model(self, model: Any, *, title: str | None = None) -> None:
        """Show another model (e.g. the QDQ model after an apply); the frame reloads itself."""
        self.title = title or self.title
        self.server.update(model, title=self.title)
        self._caption()

    def set_focus(self, layer: str | None) -> None:
        """Select and centre ``layer`` (its ONNX node name) in the graph and name it above."""
        self.server.set_focus(layer)
        self._caption()

    def close(self) -> None:
        self.server.stop()
        self.widget.close()

    def _caption(self) -> None:
        focus = self.server.focus
        named = f"focused layer <code>{html.escape(focus)}</code> (selected in the graph)" if focus else \
            "no layer in focus"
        self.caption.value = (f"<b>Graph</b>: {html.escape(self.title)} · {named} · "
                              f'<a href="{html.escape(self.server.url)}" target="_blank">open in a new tab</a>')

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
