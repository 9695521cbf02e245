"""Streaming calibration: every observed tensor feeds a fixed-size mergeable histogram, so
peak memory depends on the model, never on the number of samples.

Range rules are evaluated later from the stored histograms (no second model run) and
cached per (tensor, rule, bits, symmetry, signedness).

The inputs of weighted layers also get per-channel sums (float64, one value per channel:
memory independent of the sample count), whose means feed bias correction
(:mod:`workbench.quantize.plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from tqdm.auto import tqdm

from workbench.calibration.sampling import SampledGraph, channel_of_sample, keeps_range, stride_for
from workbench.graph.layers import LayerGraph
from workbench.numerics import Histogram, array_clip_range, clip_range
from workbench.recipe import MinMax, RangeRule
from workbench.runtime import Runner, Slicer
from workbench.runtime.slicer import DEFAULT_MAX_BYTES


@dataclass
class ChannelStats:
    """Running per-channel statistics of one tensor along ``axis``: float64 sums and value counts
    (the mean), and the smallest and largest value seen (mergeable). Fed either whole tensors or a
    fixed-stride sample of their flattened values."""

    axis: int
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None  # values seen per channel
    spatial: tuple[int, ...] | None = None  # channel axis 1: the dims after it (first batch seen)
    lo: np.ndarray | None = None  # per-channel minimum
    hi: np.ndarray | None = None  # per-channel maximum

    def update(self, x: np.ndarray, *, shape: tuple[int, ...] | None = None, stride: int = 1) -> None:
        """Add ``x``: a whole tensor, or (``stride > 1``) the values at flat positions
        ``0, stride, 2·stride, …`` of a tensor of ``shape``."""
        x = np.asarray(x)
        shape = tuple(int(d) for d in (x.shape if shape is None else shape))
        axis = self.axis % len(shape)
        channels = shape[axis]
        if stride == 1:
            x = x.reshape(shape)
            others = tuple(i for i in range(x.ndim) if i != axis)
            s = x.sum(axis=others, dtype=np.float64)
            c = np.full(channels, x.size // max(channels, 1), np.float64)
            lo, hi = x.min(axis=others).astype(np.float64), x.max(axis=others).astype(np.float64)
        else:
            ch = channel_of_sample(shape, axis, stride, x.size)
            flat = x.reshape(-1).astype(np.float64)
            s = np.bincount(ch, weights=flat, minlength=channels)
            c = np.bincount(ch, minlength=channels).astype(np.float64)
            lo, hi = np.full(channels, np.inf), np.full(channels, -np.inf)
            np.minimum.at(lo, ch, flat)
            np.maximum.at(hi, ch, flat)
        if self.sums is None or self.counts is None or self.lo is None or self.hi is None:
            self.sums, self.counts, self.lo, self.hi = s, c, lo, hi
        elif self.sums.shape != s.shape:
            raise ValueError(f"channel count changed from {self.sums.shape[0]} to {s.shape[0]} on axis {self.axis}")
        else:
            self.sums, self.counts = self.sums + s, self.counts + c
            self.lo, self.hi = np.minimum(self.lo, lo), np.maximum(self.hi, hi)
        if self.spatial is None and axis == 1 and len(shape) > 2:
            self.spatial = shape[2:]

    @property
    def count(self) -> int:
        """Fewest values seen in any channel (0 before the first update)."""
        return 0 if self.counts is None or not self.counts.size else int(self.counts.min())

    @property
    def mean(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)

    def to_dict(self) -> dict[str, Any]:
        def listed(a: np.ndarray | None) -> list[float]:
            return [] if a is None else a.tolist()

        return {"axis": self.axis, "sums": listed(self.sums), "counts": listed(self.counts),
                "lo": listed(self.lo), "hi": listed(self.hi),
                "spatial": None if self.spatial is None else list(self.spatial)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelStats:
        def array(key: str) -> np.ndarray | None:
            return np.asarray(d[key], np.float64) if d.get(key) else None

        sums = array("sums")
        if sums is not None and "counts" not in d:  # saved before per-channel counts: one count for all
            counts: np.ndarray | None = np.full(sums.shape, float(d["count"]))
        else:
            counts = array("counts")
        spatial = tuple(int(v) for v in d["spatial"]) if d.get("spatial") else None
        return cls(int(d["axis"]), sums, counts, spatial, array("lo"), array("hi"))


@dataclass
class Calibration:
    """Histograms of activation tensors plus the number of samples seen, per-channel statistics of
    the inputs of weighted layers (``means``: tensor -> running mean, min and max along its channel
    axis), and the sampling stride of every tensor (``strides``: 1 = every value seen; k = one
    value in k, see :mod:`workbench.calibration.sampling`)."""

    histograms: dict[str, Histogram]
    num_samples: int
    _ranges: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict, repr=False)
    means: dict[str, ChannelStats] = field(default_factory=dict, repr=False)
    strides: dict[str, int] = field(default_factory=dict, repr=False)

    def channel_range(self, tensor: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (min, max) of ``tensor`` along its collected channel axis, or None."""
        m = self.means.get(tensor)
        return None if m is None or m.lo is None or m.hi is None else (m.lo, m.hi)

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
        """One row per tensor: min, max, mean, std, zero fraction, values seen, sampling stride."""
        return [
            {"tensor": name, "min": h.min, "max": h.max, "mean": h.mean, "std": h.std,
             "zero_fraction": h.zero_fraction, "count": h.count, "stride": self.strides.get(name, 1)}
            for name, h in self.histograms.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples,
                "histograms": {k: h.to_dict() for k, h in self.histograms.items()},
                "channel_means": {k: m.to_dict() for k, m in self.means.items()},
                "strides": {k: v for k, v in self.strides.items() if v != 1}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls({k: Histogram.from_dict(v) for k, v in d["histograms"].items()}, int(d["num_samples"]),
                   means={k: ChannelStats.from_dict(v) for k, v in d.get("channel_means", {}).items()},
                   strides={k: int(v) for k, v in d.get("strides", {}).items()})


def calibrate(model: onnx.ModelProto, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]], *,
              num_batches: int | None = None, progress: bool = True, bins: int = 2048,
              splittable: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
              channel_axes: Mapping[str, int] | None = None,
              values_per_sample: int | None = None) -> Calibration:
    """Run ``model`` once over ``feeds``, folding every tensor of ``tensors`` into a histogram,
    and every tensor of ``channel_axes`` (tensor -> channel axis) into per-channel sums.

    ``values_per_sample=None`` observes every value; ``m`` observes about ``m`` values per sample
    of each larger tensor (a fixed prime stride, cut inside the graph: see
    :mod:`workbench.calibration.sampling`). Peak memory is the model's own plus at most
    ``max_bytes`` of exposed tensors (batches are run in slices when ``splittable``), whatever the
    number of samples."""
    channel_axes = dict(channel_axes or {})
    exposed = list(dict.fromkeys([*tensors, *channel_axes]))
    observer = (_Exact(model, exposed, max_bytes, splittable) if values_per_sample is None
                else _Sampled(model, exposed, list(channel_axes), values_per_sample, max_bytes, splittable))
    hists = {t: Histogram(bins=bins) for t in tensors}
    means = {t: ChannelStats(axis) for t, axis in channel_axes.items()}
    samples = 0
    with tqdm(total=num_batches, desc="calibrating", disable=not progress, unit="batch") as bar:
        for feed in feeds:
            for n, observed in observer.run(feed):
                samples += n
                for name, (values, stride, shape) in observed.items():
                    if name in hists:
                        hists[name].update(values)
                    if name in means:
                        means[name].update(values, shape=shape, stride=stride)
            bar.update(1)
    return Calibration(hists, samples, means=means, strides=observer.strides())


Observed = dict[str, tuple[np.ndarray, int, tuple[int, ...] | None]]  # tensor -> (values, stride, shape)


def _count(feed: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(feed.values())))


class _Exact:
    """Every value of every tensor, exposed as graph outputs."""

    def __init__(self, model: onnx.ModelProto, exposed: list[str], max_bytes: int, splittable: bool) -> None:
        self.slicer = Slicer([Runner(model, outputs=exposed, optimize=True)], max_bytes=max_bytes,
                             splittable=splittable)

    def run(self, feed: Mapping[str, np.ndarray]) -> Iterator[tuple[int, Observed]]:
        for part, (outs,) in self.slicer.run(feed):
            yield _count(part), {t: (v, 1, None) for t, v in outs.items()}

    def strides(self) -> dict[str, int]:
        return {}


class _Sampled:
    """A fixed-stride sample of each large tensor, cut inside the graph; the strides are chosen on
    the first sample, which is observed whole (a tensor whose slice misses that sample's extremes
    stays exact) and then sliced the same way."""

    def __init__(self, model: onnx.ModelProto, exposed: list[str], shaped: list[str], per_sample: int,
                 max_bytes: int, splittable: bool) -> None:
        self.graph = SampledGraph(model, exposed, shaped)
        self.runner = Runner(self.graph.proto, optimize=True)
        self.per_sample = per_sample
        self.splittable = splittable
        self.max_bytes = max_bytes
        self._strides: dict[str, int] | None = None
        self.slicer: Slicer | None = None

    def run(self, feed: Mapping[str, np.ndarray]) -> Iterator[tuple[int, Observed]]:
        if self._strides is None:
            probe = {k: v[:1] for k, v in feed.items()} if self.splittable else dict(feed)
            n = _count(probe)
            outs = self.runner.run({**probe, **self.graph.stride_feed({})})
            self._strides = {}
            for t, s in self.graph.sliced.items():
                k = stride_for(outs[s].size // n, self.per_sample)
                self._strides[t] = k if keeps_range(outs[s], k) else 1
            self.slicer = Slicer([_WithStrides(self.runner, self.graph.stride_feed(self._strides))],
                                 max_bytes=self.max_bytes, splittable=self.splittable)
            yield n, self._observed(outs, probe=True)
            feed = {k: v[n:] for k, v in feed.items()}
            if not self.splittable or not _count(feed):
                return
        assert self.slicer is not None
        for part, (outs,) in self.slicer.run(feed):
            yield _count(part), self._observed(outs)

    def _observed(self, outs: Mapping[str, np.ndarray], *, probe: bool = False) -> Observed:
        """Per tensor: (sampled values, stride, run-time shape); the probe ran with stride 1, so its
        values are sliced here exactly as the graph slices later batches."""
        assert self._strides is not None
        observed: Observed = {}
        for t, s in self.graph.sliced.items():
            k = self._strides[t]
            values = outs[s][::k] if probe else outs[s]
            shape = tuple(int(d) for d in outs[self.graph.shapes[t]]) if t in self.graph.shapes else None
            observed[t] = (values, k, shape)
        return observed

    def strides(self) -> dict[str, int]:
        return dict(self._strides or {})


class _WithStrides:
    """A runner that adds the stride inputs to every feed (what :class:`Slicer` drives)."""

    def __init__(self, runner: Runner, strides: dict[str, np.ndarray]) -> None:
        self.runner, self.strides = runner, strides

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner.run({**feed, **self.strides})


def input_channel_axes(lg: LayerGraph) -> dict[str, int]:
    """Activation input -> channel axis, for the inputs of weighted layers (Conv: 1, MatMul: last,
    Gemm: the reduced axis of A): what bias correction needs the per-channel means of, and
    per-channel activation ranges the per-channel minima and maxima of."""
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
