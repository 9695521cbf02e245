"""Every quantizable layer in a sortable, filterable table; selecting rows focuses them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import ipywidgets as w
import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, DataTable, NumberFormatter, TableColumn

from workbench.session import Session
from workbench.ui.bokeh_support import bokeh_widget

COLUMNS = ("layer", "op_type", "precision", "symmetry", "range", "weights", "sqnr_db", "sensitivity_db")
ALL = "all op types"


class LayerTable:
    """``on_select(names)`` is called with the selected layer names (first = focus)."""

    def __init__(self, session: Session, on_select: Callable[[list[str]], None]) -> None:
        self.session = session
        self.on_select = on_select
        self.source = ColumnDataSource({c: [] for c in COLUMNS})
        number = NumberFormatter(format="0.0")
        columns = [TableColumn(field=c, title=c.replace("_db", " (dB)"), formatter=number) if c.endswith("_db")
                   else TableColumn(field=c, title=c) for c in COLUMNS]
        self.table = DataTable(source=self.source, columns=columns, sortable=True, selectable=True,
                               index_position=None, width=900, height=260)
        self.source.selected.on_change("indices", lambda _a, _o, new: self._selected(new))
        ops = sorted({lay.op_type for lay in session.graph.layers.values()})
        self.op = w.Dropdown(options=[ALL, *ops], description="op type")
        self.name = w.Text(placeholder="name contains", layout=w.Layout(width="200px"))
        self.below = w.Text(placeholder="SQNR below (dB)", layout=w.Layout(width="140px"))
        for control in (self.op, self.name, self.below):
            control.observe(lambda _: self.refresh(), "value")
        self.count = w.HTML()
        self.sensitivity = w.Button(description="sensitivity", icon="search",
                                    tooltip="per layer: output SQNR with only that layer quantized (calibration data)")
        self.sensitivity.on_click(lambda _: self._sensitivity())
        self.plot = bokeh_widget(self.table)
        self.widget = w.VBox([w.HBox([self.op, self.name, self.below, self.sensitivity, self.count]), self.plot])
        self.refresh()

    def frame(self) -> pd.DataFrame:
        """The rows currently shown (after the filters)."""
        df = self.session.layers()
        for c in COLUMNS:
            if c not in df:
                df[c] = np.nan
        keep = np.ones(len(df), dtype=bool)
        if self.op.value != ALL:
            keep &= (df.op_type == self.op.value).to_numpy()
        if self.name.value:
            keep &= df.layer.str.contains(self.name.value, regex=False).to_numpy()
        with contextlib.suppress(ValueError):  # empty or not a number: no SQNR filter
            keep &= (df.sqnr_db.astype(float) < float(self.below.value)).to_numpy()
        return df.loc[keep, list(COLUMNS)].reset_index(drop=True)

    def refresh(self) -> None:
        df = self.frame()
        self._names = df.layer.tolist()
        self.source.data = {c: df[c].tolist() for c in COLUMNS}
        self.count.value = f"{len(df)} of {len(self.session.graph.layers)} layers"

    def _sensitivity(self) -> None:
        self.sensitivity.disabled = True
        try:
            self.session.sensitivity()
        finally:
            self.sensitivity.disabled = False
        self.refresh()

    def select(self, names: list[str]) -> None:
        """Select rows by layer name (from Python: the view follows the session's focus)."""
        self.source.selected.indices = [self._names.index(n) for n in names if n in self._names]

    def _selected(self, indices: list[int]) -> None:
        names = [self._names[i] for i in indices if i < len(self._names)]
        if names:
            self.on_select(names)
