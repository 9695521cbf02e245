"""Streaming calibration: every observed tensor feeds a fixed-size mergeable histogram, so
peak memory depends on the model, never on the number of samples.

Range rules are evaluated later from the stored histograms (no second model run) and
cached per (tensor, rule, bits, symmetry, signedness).

The inputs of weighted layers also get per-channel sums (float64, one value per channel:
memory independent of the sample count), whose means feed bias correction
(:mod:`workbench.quantize.plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from tqdm.auto import tqdm

from workbench.graph.layers import LayerGraph
from workbench.numerics import Histogram, array_clip_range, clip_range
from workbench.recipe import MinMax, RangeRule
from workbench.runtime import Runner, Slicer
from workbench.runtime.slicer import DEFAULT_MAX_BYTES


@dataclass
class ChannelMean:
    """Running per-channel mean of one tensor along ``axis`` (float64 sums, mergeable)."""

    axis: int
    sums: np.ndarray | None = None
    count: int = 0  # elements per channel seen so far
    spatial: tuple[int, ...] | None = None  # channel axis 1: the dims after it (first batch seen)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        axis = self.axis % x.ndim
        others = tuple(i for i in range(x.ndim) if i != axis)
        s = x.sum(axis=others, dtype=np.float64)
        if self.sums is None:
            self.sums = s
        elif self.sums.shape != s.shape:
            raise ValueError(f"channel count changed from {self.sums.shape[0]} to {s.shape[0]} on axis {self.axis}")
        else:
            self.sums = self.sums + s
        self.count += x.size // max(x.shape[axis], 1)
        if self.spatial is None and axis == 1 and x.ndim > 2:
            self.spatial = tuple(int(d) for d in x.shape[2:])

    @property
    def mean(self) -> np.ndarray:
        return self.sums / max(self.count, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "count": self.count,
                "sums": [] if self.sums is None else self.sums.tolist(),
                "spatial": None if self.spatial is None else list(self.spatial)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelMean:
        sums = np.asarray(d["sums"], np.float64) if d.get("sums") else None
        spatial = tuple(int(v) for v in d["spatial"]) if d.get("spatial") else None
        return cls(int(d["axis"]), sums, int(d["count"]), spatial)


@dataclass
class Calibration:
    """Histograms of activation tensors plus the number of samples seen, and per-channel means
    of the inputs of weighted layers (``channel_means``: tensor -> mean along its channel axis)."""

    histograms: dict[str, Histogram]
    num_samples: int
    _ranges: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict, repr=False)
    means: dict[str, ChannelMean] = field(default_factory=dict, repr=False)

    def channel_mean(self, tensor: str, axis: int) -> np.ndarray | None:
        """Per-channel mean of ``tensor`` along ``axis`` (as collected), or None if not collected."""
        m = self.means.get(tensor)
        if m is None or m.sums is None or m.count == 0 or m.axis != axis:
            return None
        return m.mean

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
                "histograms": {k: h.to_dict() for k, h in self.histograms.items()},
                "channel_means": {k: m.to_dict() for k, m in self.means.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls({k: Histogram.from_dict(v) for k, v in d["histograms"].items()}, int(d["num_samples"]),
                   means={k: ChannelMean.from_dict(v) for k, v in d.get("channel_means", {}).items()})


def calibrate(model: onnx.ModelProto, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]], *,
              num_batches: int | None = None, progress: bool = True, bins: int = 2048,
              splittable: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
              channel_axes: Mapping[str, int] | None = None) -> Calibration:
    """Run ``model`` once over ``feeds``, folding every tensor of ``tensors`` into a histogram,
    and every tensor of ``channel_axes`` (tensor -> channel axis) into per-channel sums.

    Peak memory is the model's own plus at most ``max_bytes`` of exposed tensors (batches are
    run in slices when ``splittable``), whatever the number of samples."""
    channel_axes = dict(channel_axes or {})
    exposed = list(dict.fromkeys([*tensors, *channel_axes]))
    slicer = Slicer([Runner(model, outputs=exposed)], max_bytes=max_bytes, splittable=splittable)
    hists = {t: Histogram(bins=bins) for t in tensors}
    means = {t: ChannelMean(axis) for t, axis in channel_axes.items()}
    samples = 0
    with tqdm(total=num_batches, desc="calibrating", disable=not progress, unit="batch") as bar:
        for feed in feeds:
            for part, (outs,) in slicer.run(feed):
                samples += len(next(iter(part.values())))
                for name, value in outs.items():
                    if name in hists:
                        hists[name].update(value)
                    if name in means:
                        means[name].update(value)
            bar.update(1)
    return Calibration(hists, samples, means=means)


def input_channel_axes(lg: LayerGraph) -> dict[str, int]:
    """Activation input -> channel axis, for the inputs of weighted layers (Conv: 1, MatMul: last,
    Gemm: the reduced axis of A): what bias correction needs the per-channel means of."""
    out: dict[str, int] = {}
    for layer in lg.layers.values():
        if not (layer.weight and layer.inputs) or layer.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        axis = {"Conv": 1, "MatMul": -1}.get(layer.op_type, 1)
        if layer.op_type == "Gemm":
            node = next((n for n in lg.consumers.get(layer.inputs[0], []) if n.name == layer.name), None)
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0) if node is not None else 0
            axis = 0 if trans_a else 1
        out.setdefault(layer.inputs[0], axis)
    return out


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
