"""The focused tensor's histogram with its clipping thresholds, and live error readouts.

Thresholds move four ways — dragging the red lines, typing, the range slider, or picking a
rule — and each lands in the recipe through ``session.set_range``; the readouts come from
``session.readout`` (the stored histogram, no model run). The quantization grid is drawn
when zoomed in far enough to see single steps.
"""

from __future__ import annotations

import ipywidgets as w
import numpy as np
from bokeh.models import BoxAnnotation, ColumnDataSource, Span
from bokeh.plotting import figure

from workbench.errors import WorkbenchError
from workbench.recipe import ClipRange, rule_name
from workbench.session import SEARCH_RULES, Session
from workbench.ui.bokeh_support import bokeh_widget
from workbench.ui.format import note, num

DEFAULT = "recipe default"
MAX_GRID_LINES = 64  # draw the grid only when at most this many steps are visible


class HistogramView:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.tensor: str | None = None
        self._quiet = False
        self._scale: float | None = None  # the focused grid's step (for drawing it when zoomed in)
        self._top = 1.0  # tallest bar (the grid lines' height)
        self.fig = figure(height=260, width=640, tools="xpan,xwheel_zoom,box_zoom,reset", toolbar_location="right",
                          x_axis_label="value", y_axis_label="count")
        self.bars = ColumnDataSource({"left": [], "right": [], "top": []})
        self.fig.quad(left="left", right="right", top="top", bottom=0, source=self.bars, fill_color="#4a7ab5",
                      line_color=None)
        self.grid = ColumnDataSource({"x": [], "y0": [], "y1": []})
        self.fig.segment(x0="x", x1="x", y0="y0", y1="y1", source=self.grid, line_color="#999", line_alpha=0.6)
        self.lo_line = Span(location=0, dimension="height", line_color="#c22", line_width=2, editable=True)
        self.hi_line = Span(location=1, dimension="height", line_color="#c22", line_width=2, editable=True)
        self.min_line = Span(location=0, dimension="height", line_color="#555", line_dash="dashed")
        self.max_line = Span(location=1, dimension="height", line_color="#555", line_dash="dashed")
        self.clipped_lo = BoxAnnotation(right=0, fill_color="#c22", fill_alpha=0.12)
        self.clipped_hi = BoxAnnotation(left=1, fill_color="#c22", fill_alpha=0.12)
        for a in (self.clipped_lo, self.clipped_hi, self.min_line, self.max_line, self.lo_line, self.hi_line):
            self.fig.add_layout(a)
        self.lo_line.on_change("location", lambda _a, _o, new: self._user_range(new, None))
        self.hi_line.on_change("location", lambda _a, _o, new: self._user_range(None, new))
        self.fig.x_range.on_change("start", lambda _a, _o, _n: self._draw_grid())
        self.fig.x_range.on_change("end", lambda _a, _o, _n: self._draw_grid())

        self.title = w.HTML()
        self.log = w.Checkbox(description="log counts", value=True, indent=False)
        self.rule = w.Dropdown(options=[DEFAULT, *(rule_name(r) for r in SEARCH_RULES), "clip"],
                               description="range rule", style={"description_width": "initial"})
        self.lo_box = w.FloatText(description="lo", layout=w.Layout(width="150px"))
        self.hi_box = w.FloatText(description="hi", layout=w.Layout(width="150px"))
        self.slider = w.FloatRangeSlider(description="clip", readout=False, continuous_update=True,
                                         layout=w.Layout(width="420px"))
        self.readout = w.HTML()
        self.message = w.HTML()
        self.plot = bokeh_widget(self.fig)
        self.log.observe(lambda _: self._draw_bars(), "value")
        self.rule.observe(self._user_rule, "value")
        self.lo_box.observe(lambda c: self._user_range(c["new"], None), "value")
        self.hi_box.observe(lambda c: self._user_range(None, c["new"]), "value")
        self.slider.observe(self._user_slider, "value")
        self.widget = w.VBox([self.title, self.plot, w.HBox([self.rule, self.log]),
                              w.HBox([self.lo_box, self.hi_box, self.slider]), self.readout, self.message])

    # -- from the session ------------------------------------------------------------------
    def focus(self, tensor: str | None) -> None:
        """Show ``tensor`` (an activation with calibration statistics); None clears the view."""
        cal = self.session.calibration
        self.tensor = tensor if cal is not None and tensor in cal.histograms else None
        if self.tensor is None:
            self.title.value = note("no calibration histogram for this layer's output (not quantized)")
            self.bars.data = {"left": [], "right": [], "top": []}
            return
        hist = cal.histograms[self.tensor]
        span = max(hist.max - hist.min, 1e-12)
        self._quiet = True
        try:
            self.slider.min, self.slider.max = -1e300, 1e300  # widen first: min may not pass max
            self.slider.min, self.slider.max = hist.min - 0.5 * span, hist.max + 0.5 * span
            self.slider.step = span / 1000
        finally:
            self._quiet = False
        self.min_line.location, self.max_line.location = hist.min, hist.max
        self.fig.x_range.start, self.fig.x_range.end = hist.min - 0.05 * span, hist.max + 0.05 * span
        self._draw_bars()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the tensor's range and spec from the recipe; redraw lines and readouts."""
        if self.tensor is None:
            return
        spec = self.session.tensor_spec(self.tensor)
        override = self.session.recipe.tensors.get(self.tensor)
        r = self.session.readout(self.tensor)
        self._quiet = True
        try:
            self.rule.value = "clip" if isinstance(spec.range, ClipRange) else (
                rule_name(spec.range) if override else DEFAULT)
            self.lo_box.value, self.hi_box.value = r["lo"], r["hi"]
            self.slider.value = (max(r["lo"], self.slider.min), min(r["hi"], self.slider.max))
            self.lo_line.location, self.hi_line.location = r["lo"], r["hi"]
        finally:
            self._quiet = False
        self._show(r)
        self.title.value = (f"<b>{self.tensor}</b> — {spec.precision.value} {spec.symmetry.value}, "
                            f"range rule <i>{rule_name(spec.range)}</i>")

    # -- from the user ---------------------------------------------------------------------
    def _user_range(self, lo: float | None, hi: float | None) -> None:
        if self._quiet or self.tensor is None:
            return
        lo = self.lo_line.location if lo is None else lo
        hi = self.hi_line.location if hi is None else hi
        try:
            self.session.set_range(self.tensor, float(min(lo, hi)), float(max(lo, hi)))
            self.message.value = ""
        except WorkbenchError as e:
            self.message.value = note(str(e), "error")

    def _user_slider(self, change: dict) -> None:
        """The browser snaps slider values to its step and echoes them back: only a move of at
        least one step is the user's."""
        lo, hi = change["new"]
        if max(abs(lo - self.lo_box.value), abs(hi - self.hi_box.value)) >= self.slider.step:
            self._user_range(lo, hi)

    def _user_rule(self, change: dict) -> None:
        if self._quiet or self.tensor is None or change["new"] == "clip":
            return
        rule = None if change["new"] == DEFAULT else change["new"]
        self.session.set_range(self.tensor, rule=rule)

    # -- drawing ---------------------------------------------------------------------------
    def _show(self, r: dict) -> None:
        self.clipped_lo.right, self.clipped_hi.left = r["grid_lo"], r["grid_hi"]
        self.readout.value = (
            f"SQNR estimate <b>{num(r['sqnr_db'], 1)} dB</b> · clipping MSE {num(r['clip_mse'], 3)} · "
            f"rounding MSE {num(r['round_mse'], 3)} · clipped {num(r['clipped_percent'], 3)} % · "
            f"RMSE/scale {num(r['rmse_over_scale'], 3)} (healthy ≈ 0.289) · scale {num(r['scale'], 4)}, "
            f"zero-point {r['zero_point']}, {r['bits']} bits")
        self._scale = r["scale"]
        self._draw_grid()

    def _draw_bars(self) -> None:
        if self.tensor is None:
            return
        hist = self.session.calibration.histograms[self.tensor]
        counts, edges = hist.counts, hist.edges
        nz = np.flatnonzero(counts)
        if nz.size == 0:
            self.bars.data = {"left": [], "right": [], "top": []}
            return
        a, b = nz[0], nz[-1] + 1
        top = np.log10(1 + counts[a:b]) if self.log.value else counts[a:b].astype(float)
        self.fig.yaxis.axis_label = "log10(1 + count)" if self.log.value else "count"
        self.bars.data = {"left": edges[a:b].tolist(), "right": edges[a + 1:b + 1].tolist(), "top": top.tolist()}
        self._top = float(top.max())

    def _draw_grid(self) -> None:
        scale = self._scale
        start, end = self.fig.x_range.start, self.fig.x_range.end
        if scale is None or start is None or end is None or (end - start) / scale > MAX_GRID_LINES:
            self.grid.data = {"x": [], "y0": [], "y1": []}
            return
        lo_q, hi_q = np.ceil(start / scale), np.floor(end / scale)
        xs = np.arange(lo_q, hi_q + 1) * scale
        self.grid.data = {"x": xs.tolist(), "y0": [0.0] * len(xs), "y1": [self._top] * len(xs)}
