"""The focused layer's weights: each output channel's range against the per-tensor range,
and each channel's SQNR under per-tensor vs per-channel int8 (from ``session.weight_readout``)."""

from __future__ import annotations

import ipywidgets as w
import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Legend, Span
from bokeh.plotting import figure

from workbench.session import Session
from workbench.ui.bokeh_support import bokeh_widget
from workbench.ui.format import note, num


class WeightsView:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.ranges = ColumnDataSource({"c": [], "lo": [], "hi": []})
        self.errors = ColumnDataSource({"c": [], "tensor": [], "channel": []})
        self.range_fig = figure(height=200, width=640, tools="xpan,xwheel_zoom,reset", x_axis_label="output channel",
                                y_axis_label="weight range")
        self.range_fig.vbar(x="c", bottom="lo", top="hi", width=0.8, source=self.ranges, fill_color="#4a7ab5",
                            line_color=None)
        self.tensor_lo = Span(location=0, dimension="width", line_color="#c22", line_dash="dashed")
        self.tensor_hi = Span(location=0, dimension="width", line_color="#c22", line_dash="dashed")
        self.range_fig.add_layout(self.tensor_lo)
        self.range_fig.add_layout(self.tensor_hi)
        self.error_fig = figure(height=180, width=640, tools="xpan,xwheel_zoom,reset", x_range=self.range_fig.x_range,
                                x_axis_label="output channel", y_axis_label="SQNR (dB)")
        a = self.error_fig.scatter(x="c", y="tensor", source=self.errors, color="#c22", size=5)
        b = self.error_fig.scatter(x="c", y="channel", source=self.errors, color="#2a2", size=5, marker="triangle")
        self.error_fig.add_layout(Legend(items=[("per-tensor", [a]), ("per-channel", [b])], location="bottom_right"))
        self.title = w.HTML()
        self.readout = w.HTML()
        self.layout = column(self.range_fig, self.error_fig)
        self.plot = bokeh_widget(self.layout)
        self.widget = w.VBox([self.title, self.plot, self.readout])

    def focus(self, layer: str | None) -> None:
        lay = self.session.graph.layers.get(layer) if layer else None
        if lay is None or lay.weight is None:
            self.title.value = note(f"{layer or 'this layer'} has no weight")
            self.ranges.data = {"c": [], "lo": [], "hi": []}
            self.errors.data = {"c": [], "tensor": [], "channel": []}
            self.readout.value = ""
            return
        r = self.session.weight_readout(layer)
        c = np.arange(len(r["channel_min"]))
        # plain lists: JSON patches (binary buffers of numpy arrays do not always reach the page)
        self.ranges.data = {"c": c.tolist(), "lo": r["channel_min"].tolist(), "hi": r["channel_max"].tolist()}
        self.errors.data = {"c": c.tolist(), "tensor": _finite(r["channel_sqnr_per_tensor_db"]),
                            "channel": _finite(r["channel_sqnr_per_channel_db"])}
        bound = float(max(abs(r["channel_min"].min()), abs(r["channel_max"].max())))
        self.tensor_lo.location, self.tensor_hi.location = -bound, bound
        worst = int(np.argmin(r["channel_sqnr_per_tensor_db"]))
        self.title.value = f"<b>{lay.weight}</b> — {len(c)} output channels"
        self.readout.value = (
            f"int8 symmetric: per-tensor <b>{num(r['per_tensor_sqnr_db'], 1)} dB</b>, per-channel "
            f"<b>{num(r['per_channel_sqnr_db'], 1)} dB</b>; worst channel under per-tensor: {worst} "
            f"({num(r['channel_sqnr_per_tensor_db'][worst], 1)} dB, range "
            f"[{num(r['channel_min'][worst], 3)}, {num(r['channel_max'][worst], 3)}] of ±{num(bound, 3)})")


def _finite(v: np.ndarray) -> list[float]:
    """Infinite SQNR (an all-zero channel) drawn at the top of the finite values."""
    finite = v[np.isfinite(v)]
    top = float(finite.max()) + 3 if finite.size else 0.0
    return np.where(np.isfinite(v), v, top).tolist()
