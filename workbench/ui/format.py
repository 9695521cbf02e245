"""Small text helpers for the views: numbers, HTML tables, notes."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any


def num(v: Any, digits: int = 2) -> str:
    """A readable number: '—' for None/nan, '∞' for inf, fixed or scientific as fits."""
    if v is None:
        return "—"
    if not isinstance(v, float | int) or isinstance(v, bool):
        return json.dumps(v) if isinstance(v, dict | list) else str(v)
    v = float(v)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}f}" if v == 0 or 1e-3 <= abs(v) < 1e5 else f"{v:.{digits}e}"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *, title: str = "") -> str:
    """An HTML table of ``rows`` (dicts) with the given columns."""
    if not rows:
        return f"<b>{html.escape(title)}</b> <i>(none)</i>" if title else "<i>(none)</i>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(num(r.get(c)))}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    caption = f"<b>{html.escape(title)}</b>" if title else ""
    return f"{caption}<table style='border-collapse:collapse'><tr>{head}</tr>{body}</table>"


def note(text: str, kind: str = "info") -> str:
    color = {"info": "#445", "warn": "#a60", "error": "#b00"}[kind]
    return f"<div style='color:{color};line-height:1.3'>{html.escape(text)}</div>"
