"""A self-contained HTML report (no scripts, no external resources): float vs quantized per
model output, the recipe, and the per-layer error table with an inline SVG bar chart."""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from workbench.analysis.compare import Comparison
    from workbench.session import Session

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{padding:.25em .6em;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
.bad{color:#b00020;font-weight:600}.note{color:#555;font-size:.9em}pre{background:#f6f6f6;padding:1em;
overflow:auto;font-size:.8em}
"""


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return "∞" if math.isinf(v) else f"{v:.4g}"
    return html.escape(str(v))


def _table(df: pd.DataFrame, bad_col: str | None = None, bad_below: float = 20.0) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            cls = ' class="bad"' if c == bad_col and isinstance(v, float) and v < bad_below else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _bars(layers: pd.DataFrame) -> str:
    """Horizontal bars of per-layer SQNR (dB), in graph order."""
    vals = [(str(r.layer), float(r.sqnr_db)) for r in layers.itertuples()]
    finite = [v for _, v in vals if math.isfinite(v)]
    top = max([*finite, 1.0])
    h, width = 14, 700
    parts = []
    for i, (name, v) in enumerate(vals):
        x = width * (min(v, top) if math.isfinite(v) else top) / top if v > 0 else 0
        color = "#b00020" if v < 20 else "#d98c00" if v < 30 else "#2e7d32"
        y = i * h
        parts.append(f'<rect x="260" y="{y}" width="{x:.1f}" height="{h - 3}" fill="{color}"/>'
                     f'<text x="255" y="{y + h - 4}" font-size="10" text-anchor="end">{html.escape(name[:40])}</text>'
                     f'<text x="{265 + x:.1f}" y="{y + h - 4}" font-size="10">{_fmt(v)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 320}" height="{len(vals) * h + 4}">'
            + "".join(parts) + "</svg>")


def render_report(session: Session, comparison: Comparison) -> str:
    """The report page for ``session``'s current recipe and ``comparison``."""
    outputs = comparison.outputs.reset_index()
    layers = comparison.layers
    metric = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
                     for k, v in comparison.metric.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in session.notes + session.plan.notes)
    warning = comparison.deployed_warning
    gap = comparison.deployed_gap_db
    if warning:
        deployed_note = f'<p class="bad">{html.escape(warning)}</p>'
    elif gap is not None:
        deployed_note = (f'<p class="note">Exact and deployed output SQNR agree here (largest gap '
                         f"{gap:.2f} dB).</p>")
    else:
        deployed_note = '<p class="note">The deployed kernels were not run.</p>'
    cpu = comparison.cpu.get("describe") or "not measured"
    counts = layers["precision"].value_counts().to_dict()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>workbench report</title>
<style>{_CSS}</style></head><body>
<h1>Quantization report: {html.escape(session.model.source)}</h1>
<p class="note">target <b>{html.escape(session.target.name)}</b> — {html.escape(session.target.description)}<br>
{comparison.num_samples} evaluation samples · written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ·
layers by precision: {html.escape(", ".join(f"{k}: {v}" for k, v in counts.items()))}</p>
<h2>Model outputs: float vs quantized</h2>
<p class="note">SQNR = 10·log10(Σ float² / Σ (float − quantized)²). <b>sqnr_db</b> is the exact QDQ
arithmetic (what the recipe says); <b>deployed_sqnr_db</b> runs the same file with all onnxruntime
optimisations, i.e. the integer kernels of this CPU: {html.escape(cpu)}.</p>
{_table(outputs, "sqnr_db")}{deployed_note}
{"<h2>User metric</h2><table>" + metric + "</table>" if metric else ""}
<h2>Per-layer error (layer output, float vs quantized)</h2>
{_bars(layers)}
{_table(layers, "sqnr_db")}
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
<h2>Recipe</h2><pre>{html.escape(session.recipe.to_json())}</pre>
</body></html>
"""
