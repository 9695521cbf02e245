"""Apply (re-simulate and compare before/after), ledger (list, diff, return), export."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w

from workbench.analysis.compare import Metric
from workbench.errors import WorkbenchError
from workbench.ledger import LedgerEntry
from workbench.session import Session
from workbench.ui.format import note, table

HEADLINE = ("sqnr_db", "min_sqnr_db", "deployed_sqnr_db", "worst_layer_sqnr_db", "metric_float", "metric_quantized",
            "metric_deployed")


class ApplyPanel:
    """Re-simulate the current recipe on the evaluation data; show the result beside the last one."""

    def __init__(self, session: Session, eval_data: Any, metric: Metric | None, *, limit: int | None = None,
                 on_done: Callable[[], None] = lambda: None) -> None:
        self.session, self.eval_data, self.metric, self.limit, self.on_done = session, eval_data, metric, limit, on_done
        self.button = w.Button(description="Apply", button_style="primary", icon="play",
                               tooltip="re-simulate the recipe on the evaluation data")
        self.search = w.Button(description="search defaults", icon="search",
                               tooltip="try each range rule, then bias correction, depthwise equalization and "
                                       "affine folding each way, as the recipe's defaults; keep the best output "
                                       "SQNR on 16 calibration samples (as `workbench quantize` does). Per-layer "
                                       "settings stay; undo takes it back")
        self.progress = w.Output()
        self.result = w.HTML()
        self.button.on_click(lambda _: self.apply())
        self.search.on_click(lambda _: self.search_defaults())
        if eval_data is None:
            self.button.disabled = True
            self.result.value = note("pass eval_data to session.show(...) to re-simulate here", "warn")
        self.widget = w.VBox([w.HBox([self.button, self.search]), self.progress, self.result])

    def _run(self, action: Callable[[], Any]) -> Any:
        """``action()`` with both buttons disabled and its progress bars shown; a WorkbenchError is
        shown in the panel (and None returned)."""
        disabled = self.button.disabled
        self.button.disabled = self.search.disabled = True
        self.progress.clear_output()
        try:
            with self.progress:
                return action()
        except WorkbenchError as e:
            self.result.value = note(str(e), "error")
            return None
        finally:
            self.button.disabled, self.search.disabled = disabled, False
            self.progress.clear_output()

    def search_defaults(self) -> None:
        """``session.search_ranges()``: the candidates tried, their SQNR, and the one kept."""
        tried = self._run(self.session.search_ranges)
        if tried is None:
            return
        best = int(tried.sqnr_db.to_numpy().argmax())
        rows = [{"": "kept" if i == best else "", **r} for i, r in enumerate(tried.to_dict("records"))]
        self.result.value = (table(rows, title="defaults tried: output SQNR (dB) on calibration data")
                             + note(self.session.notes[-1]))

    def apply(self) -> None:
        if self._run(lambda: self.session.compare(self.eval_data, metric=self.metric, limit=self.limit)) is None:
            return
        entries = self.session.ledger[-2:]
        rows = [{"": f"#{e.id} {'(before)' if i == 0 and len(entries) == 2 else '(now)'}",
                 **{k: e.summary.get(k) for k in HEADLINE if k in entries[-1].summary}}
                for i, e in enumerate(entries)]
        warning = self.session.comparison.deployed_warning
        self.result.value = (table(rows, title="model outputs") + "".join(note(n) for n in _changes(entries))
                             + (note(warning, "warn") if warning else ""))
        self.on_done()


def _changes(entries: list[LedgerEntry]) -> list[str]:
    """Whether the last Apply's change of output SQNR is more than the luck of the samples drawn:
    one line per output, with the 90 % paired-bootstrap interval (same data only)."""
    if len(entries) != 2 or entries[0].comparison is None or entries[1].comparison is None:
        return []
    change = entries[1].comparison.change_from(entries[0].comparison)
    return [f"output {t!r}: {r.change_db:+.2f} dB since #{entries[0].id}, 90 % interval "
            f"[{r.interval_lo_db:+.2f}, {r.interval_hi_db:+.2f}] over these {int(r.samples)} samples: "
            + ("within what the choice of samples alone could give" if r.interval_lo_db <= 0 <= r.interval_hi_db
               else "more than the choice of samples explains")
            for t, r in change.iterrows()]


class LedgerPanel:
    """Every applied recipe with its metrics; diff two entries; return to one."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.list = w.HTML()
        self.a = w.Dropdown(description="diff", layout=w.Layout(width="140px"))
        self.b = w.Dropdown(description="→", options=[("now", 0)], layout=w.Layout(width="140px"))
        self.diff = w.HTML()
        self.back = w.Button(description="return to", tooltip="make the first entry's recipe current (undoable)")
        for d in (self.a, self.b):
            d.observe(lambda _: self._diff(), "value")
        self.back.on_click(lambda _: self._back())
        self.widget = w.VBox([self.list, w.HBox([self.a, self.b, self.back]), self.diff])
        self.refresh()

    def _back(self) -> None:
        if not self.a.value:
            return
        try:
            self.session.restore(self.a.value)
        except WorkbenchError as e:
            self.diff.value = note(str(e), "error")

    def refresh(self) -> None:
        t = self.session.ledger_table()
        cols = [c for c in ("id", "time", "changes", "changed", *HEADLINE) if c in t]
        self.list.value = table(t[cols].to_dict("records") if len(t) else [], title="ledger")
        ids = [(f"#{i}", int(i)) for i in t.get("id", [])]
        self.a.options = ids
        self.b.options = [("now", 0), *ids]
        self._diff()

    def _diff(self) -> None:
        if not self.a.value:
            self.diff.value = ""
            return
        d = self.session.diff(self.a.value, self.b.value or None)
        self.diff.value = table(d.to_dict("records"), title="settings that differ")


class ExportPanel:
    """Write the QDQ model, its recipe and the HTML report; link to the report."""

    def __init__(self, session: Session) -> None:
        self.session = session
        src = Path(session.model.source)
        default = src.with_name(src.stem + ".qdq.onnx") if src.is_file() else Path("model.qdq.onnx")
        self.path = w.Text(value=str(default), description="QDQ model", layout=w.Layout(width="520px"))
        self.with_report = w.Checkbox(value=True, description="with report", indent=False)
        self.button = w.Button(description="Export", icon="download")
        self.result = w.HTML()
        self.button.on_click(lambda _: self.export())
        self.widget = w.VBox([w.HBox([self.path, self.with_report, self.button]), self.result])

    def export(self) -> dict[str, str] | None:
        out = Path(self.path.value)
        report = out.with_suffix(".report.html") if self.with_report.value and self.session.comparison else None
        try:
            written = self.session.export(out, report=report)
        except WorkbenchError as e:
            self.result.value = note(str(e), "error")
            return None
        links = [f"<a href='{html.escape(_link(p))}' target='_blank'>{html.escape(p)}</a>" for p in written.values()]
        self.result.value = "wrote " + ", ".join(links) + ("" if report or not self.with_report.value else
                                                          note("no report: Apply first to get evaluation results"))
        return written


def _link(path: str) -> str:
    """A link JupyterLab opens: relative to the notebook's folder when possible."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return Path(path).resolve().as_uri()
