"""Streaming calibration: every observed tensor feeds a fixed-size mergeable histogram, so
peak memory depends on the model, never on the number of samples.

Range rules are evaluated later from the stored histograms (no second model run) and
cached per (tensor, rule, bits, symmetry, signedness).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from tqdm.auto import tqdm

from workbench.numerics import Histogram, array_clip_range, clip_range
from workbench.recipe import MinMax, RangeRule
from workbench.runtime import Runner, Slicer
from workbench.runtime.slicer import DEFAULT_MAX_BYTES


@dataclass
class Calibration:
    """Histograms of activation tensors plus the number of samples seen."""

    histograms: dict[str, Histogram]
    num_samples: int
    _ranges: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict, repr=False)

    def range(self, tensor: str, rule: RangeRule, *, bits: int, symmetric: bool, signed: bool
              ) -> tuple[float, float]:
        """Clip range of ``tensor`` under ``rule`` (cached)."""
        key = (tensor, rule, bits, symmetric, signed)
        if key not in self._ranges:
            self._ranges[key] = clip_range(self.histograms[tensor], rule, bits=bits, symmetric=symmetric,
                                           signed=signed)
        return self._ranges[key]

    def summary(self) -> list[dict[str, Any]]:
        """One row per tensor: min, max, mean, std, zero fraction, element count."""
        return [
            {"tensor": name, "min": h.min, "max": h.max, "mean": h.mean, "std": h.std,
             "zero_fraction": h.zero_fraction, "count": h.count}
            for name, h in self.histograms.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples,
                "histograms": {k: h.to_dict() for k, h in self.histograms.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls({k: Histogram.from_dict(v) for k, v in d["histograms"].items()}, int(d["num_samples"]))


def calibrate(model: onnx.ModelProto, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]], *,
              num_batches: int | None = None, progress: bool = True, bins: int = 2048,
              splittable: bool = True, max_bytes: int = DEFAULT_MAX_BYTES) -> Calibration:
    """Run ``model`` once over ``feeds``, folding every tensor of ``tensors`` into a histogram.

    Peak memory is the model's own plus at most ``max_bytes`` of exposed tensors (batches are
    run in slices when ``splittable``), whatever the number of samples."""
    slicer = Slicer([Runner(model, outputs=list(tensors))], max_bytes=max_bytes, splittable=splittable)
    hists = {t: Histogram(bins=bins) for t in tensors}
    samples = 0
    with tqdm(total=num_batches, desc="calibrating", disable=not progress, unit="batch") as bar:
        for feed in feeds:
            for part, (outs,) in slicer.run(feed):
                samples += len(next(iter(part.values())))
                for name, value in outs.items():
                    hists[name].update(value)
            bar.update(1)
    return Calibration(hists, samples)


@dataclass(frozen=True)
class WeightStats:
    """Per-tensor and per-channel ranges of one weight initializer."""

    name: str
    axis: int
    channel_min: np.ndarray
    channel_max: np.ndarray
    histogram: Histogram


def weight_stats(name: str, w: np.ndarray, axis: int) -> WeightStats:
    lo, hi = array_clip_range(w, MinMax(), bits=8, symmetric=False, signed=True, axis=axis)
    hist = Histogram()
    hist.update(w)
    return WeightStats(name, axis, np.asarray(lo), np.asarray(hi), hist)
