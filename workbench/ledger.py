"""The ledger: every applied recipe with its metrics, to list, diff and return to.

An entry is written each time the quantized model is evaluated (``Session.compare``); the
recipe is a frozen value, so returning to an entry is just assigning its recipe again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from workbench.analysis.compare import Comparison
from workbench.recipe import Recipe

__all__ = ["LedgerEntry", "ledger_table", "recipe_diff", "summarize"]


@dataclass(frozen=True)
class LedgerEntry:
    """One evaluated recipe. ``comparison`` is None for entries restored from an autosave."""

    id: int
    time: str  # ISO 8601, local time, seconds
    recipe: Recipe
    summary: dict[str, float]
    comparison: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "recipe": self.recipe.to_dict(),
                "summary": {k: (v if math.isfinite(v) else None) for k, v in self.summary.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LedgerEntry:
        summary = {k: (math.inf if v is None else float(v)) for k, v in d.get("summary", {}).items()}
        return cls(int(d["id"]), str(d["time"]), Recipe.from_dict(d["recipe"]), summary)


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def summarize(comparison: Comparison) -> dict[str, float]:
    """Headline numbers of a comparison: mean/min output SQNR (exact and deployed), the user
    metric (float / quantized / deployed) when there is one, and the worst layer's SQNR."""
    out = comparison.outputs
    s = {"sqnr_db": float(out["sqnr_db"].mean()), "min_sqnr_db": float(out["sqnr_db"].min()),
         "num_samples": float(comparison.num_samples)}
    if "deployed_sqnr_db" in out:
        s["deployed_sqnr_db"] = float(out["deployed_sqnr_db"].mean())
    if len(comparison.layers):
        s["worst_layer_sqnr_db"] = float(np.nanmin(comparison.layers["sqnr_db"].to_numpy(dtype=float)))
    s.update({f"metric_{k}": float(v) for k, v in comparison.metric.items()})
    return s


def recipe_diff(a: Recipe, b: Recipe) -> list[dict[str, Any]]:
    """Every setting that differs from ``a`` to ``b``: ``{"path", "before", "after"}`` with
    dotted paths into the recipe's JSON (``layers.conv1.precision``); None means absent."""
    rows: list[dict[str, Any]] = []
    _diff(a.to_dict(), b.to_dict(), "", rows)
    return rows


def _diff(x: Any, y: Any, path: str, rows: list[dict[str, Any]]) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for key in dict.fromkeys([*x, *y]):
            _diff(x.get(key), y.get(key), f"{path}.{key}" if path else str(key), rows)
    elif x != y:
        rows.append({"path": path, "before": x, "after": y})


def ledger_table(entries: list[LedgerEntry]) -> pd.DataFrame:
    """One row per entry: id, time, what changed since the previous entry, headline metrics."""
    rows = []
    previous: Recipe | None = None
    for e in entries:
        changes = recipe_diff(previous, e.recipe) if previous is not None else []
        rows.append({"id": e.id, "time": e.time, "changes": len(changes),
                     "changed": ", ".join(c["path"] for c in changes[:3]) + (" …" if len(changes) > 3 else ""),
                     **e.summary})
        previous = e.recipe
    return pd.DataFrame(rows)
