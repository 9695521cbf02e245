"""The workbench: the views over one session, wired to its traits.

Data flows one way: a view calls a session verb → the session replaces ``recipe`` /
``comparison`` / ``ledger`` → the observers below refresh every view. So a change made from
Python (``session.set(...)``) shows in the controls and plots exactly like a click does.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from workbench.analysis.compare import Metric
from workbench.errors import WorkbenchError
from workbench.session import Session
from workbench.ui.controls import Controls
from workbench.ui.format import note
from workbench.ui.histogram_view import HistogramView
from workbench.ui.layer_table import LayerTable
from workbench.ui.panels import ApplyPanel, ExportPanel, LedgerPanel
from workbench.ui.weights_view import WeightsView


class Workbench(w.VBox):
    """``Workbench(session, eval_data=..., metric=...)`` (or ``session.show(...)``) in a notebook cell."""

    def __init__(self, session: Session, *, eval_data: Any = None, metric: Metric | None = None,
                 eval_limit: int | None = None) -> None:
        if session.calibration is None:
            raise WorkbenchError("the workbench needs calibration statistics; call session.calibrate(data) first")
        self.session = session
        self.focused: str | None = None
        self.selected: list[str] = []
        self.header = w.HTML()
        self.restore = w.Button(description="restore autosave", icon="history", button_style="warning")
        self.restore.on_click(lambda _: self._restore())
        self.table = LayerTable(session, self._on_select)
        self.tensor = w.Dropdown(description="tensor", layout=w.Layout(width="520px"))
        self.tensor.observe(lambda c: self.histogram.focus(c["new"]), "value")
        self.histogram = HistogramView(session)
        self.weights = WeightsView(session)
        self.controls = Controls(session, lambda: (self.focused, self.selected))
        self.apply_panel = ApplyPanel(session, eval_data, metric, limit=eval_limit)
        self.ledger = LedgerPanel(session)
        self.export_panel = ExportPanel(session)
        self.graph_button = w.Button(description="show graph", icon="sitemap",
                                     tooltip="serve the QDQ model with netron on 127.0.0.1 and embed it")
        self.graph_box = w.VBox([self.graph_button])
        self.graph_button.on_click(lambda _: self._show_graph())
        self._graph = None
        views = w.Tab([w.VBox([self.tensor, self.histogram.widget]), self.weights.widget])
        views.set_title(0, "activations")
        views.set_title(1, "weights")
        panels = w.Tab([self.apply_panel.widget, self.ledger.widget, self.export_panel.widget, self.graph_box])
        for i, title in enumerate(("apply", "ledger", "export", "graph")):
            panels.set_title(i, title)
        middle = w.HBox([views, self.controls.widget], layout=w.Layout(flex_flow="row wrap"))
        super().__init__([self.header, self.table.widget, middle, panels])
        session.observe(self._on_recipe, "recipe")
        session.observe(self._on_results, "ledger")  # set by every compare(), after the comparison
        self._header()
        first = next(iter(session.graph.layers), None)
        if first:
            self.focus(first)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # BokehJS renders a plot from its bundle; changes made before the widget is on the page
        # are not replayed, so bundle the plots' current state right before display
        for plot, model in ((self.histogram.plot, self.histogram.fig), (self.weights.plot, self.weights.layout),
                            (self.table.plot, self.table.table)):
            plot.update_from_model(model)
        return super()._repr_mimebundle_(**kwargs)

    # -- focus -----------------------------------------------------------------------------
    def focus(self, layer: str) -> None:
        """Focus ``layer`` everywhere: table row, histogram, weights, controls, graph."""
        lay = self.session.graph.layers.get(layer)
        if lay is None:
            raise WorkbenchError(f"no quantizable layer named {layer!r}; see session.layers()")
        self.focused = layer
        if layer not in self.selected:
            self.selected = [layer]
            self.table.select([layer])
        tensors = list(dict.fromkeys([lay.output, *lay.inputs]))
        cal = self.session.calibration
        self.tensor.options = [t for t in tensors if t in cal.histograms] or [lay.output]
        self.tensor.value = self.tensor.options[0]
        self.histogram.focus(self.tensor.value)
        self.weights.focus(layer)
        self.controls.refresh()
        if self._graph is not None:
            self._graph.set_focus(layer)

    def _on_select(self, names: list[str]) -> None:
        self.selected = names
        if names[0] != self.focused:
            self.focus(names[0])

    # -- session → views -------------------------------------------------------------------
    def _on_recipe(self, change: Any) -> None:
        old, new = change["old"], change["new"]
        if old is None or (old.layers, old.activations, old.weights) != (new.layers, new.activations, new.weights):
            self.table.refresh()  # layer settings changed (a tensor's clip range is not in the table)
            self.table.select(self.selected)
        self.histogram.refresh()
        self.controls.refresh()
        self._header()

    def _on_results(self, _change: Any = None) -> None:
        self.table.refresh()
        self.table.select(self.selected)
        self.ledger.refresh()
        if self._graph is not None:
            self._graph.set_model(self.session.quantize(), title="QDQ model")

    def _header(self) -> None:
        s = self.session
        found = s.autosaved
        banner = note(f"an autosaved recipe from {found.saved_at} exists ({found.path})", "warn") if found else ""
        self.header.value = (f"<b>{s.model.source}</b> · target <b>{s.target.name}</b> · "
                             f"{len(s.graph.layers)} layers · {s.calibration.num_samples} calibration samples"
                             f"{banner}")
        self.restore.layout.display = None if found else "none"
        if found and self.restore not in self.children:
            self.children = (self.header, self.restore, *self.children[1:])

    def _restore(self) -> None:
        self.session.restore_autosave()
        self._header()

    def _show_graph(self) -> None:
        from workbench.ui.netron_view import NetronView

        self._graph = NetronView(self.session.quantize(), title="QDQ model", focus=self.focused)
        self.graph_box.children = [self._graph.widget]

    def close(self) -> None:
        if getattr(self, "session", None) is not None:
            self.session.unobserve(self._on_recipe, "recipe")
            self.session.unobserve(self._on_results, "ledger")
            self.session = None
        if getattr(self, "_graph", None) is not None:
            self._graph.close()
        super().close()
