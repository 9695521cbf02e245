"""Per-channel resolution for activations read only by depthwise convolutions, with one scale
per tensor: the channel scales are folded into the neighbouring weights.

A depthwise convolution never mixes channels, yet under one activation scale a channel of width
0.2 beside one of width 6 keeps ~8 of 256 levels (MediaPipe's hand landmark model: 23 dB output
SQNR at W8A8). For ``x = act(W₁ ∗ u + b₁) → depthwise W₂`` with ``act`` positively homogeneous
per channel (none, Relu, Clip with bounds around 0, MaxPool/Identity on the way), dividing
channel ``c`` of ``W₁`` and ``b₁`` by ``s_c > 0`` and multiplying the depthwise filters reading it
by ``s_c`` leaves the float function unchanged on the calibrated range (as AIMET's cross-layer
scaling, restricted to where it is exact)::

    s_c = max(hi'_c / hi, lo'_c / lo, 1/4096),   [lo'_c, hi'_c] = channel range clipped to [lo, hi]

with ``[lo, hi]`` the tensor's range rule. Channel ``c`` then spans the whole grid, so the grid
step in its own units is ``s_c·Δ`` — for a Relu/Clip(0, ·) channel exactly the per-channel scale
``hi'_c/255``. A Clip's bounds in the scaled units are never inside ``s_c·[lo, hi] ⊇ [lo'_c, hi'_c]``,
so it clips no calibrated value the unscaled model keeps. With per-channel symmetric weights the
integer weights do not change at all (their scales move by ``1/s_c`` and ``s_c``), and the file
keeps one scale per activation, so onnxruntime still fuses every convolution into its integer
kernels (per-channel activation scales made it run them in float: 1.4–3.9× slower).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from workbench.calibration import Calibration
from workbench.graph.layers import Layer, LayerGraph
from workbench.recipe import ClipRange, Recipe

#: Smallest channel scale: a channel narrower than 1/4096 of the tensor range (dead on the
#: calibration data) is left with 12 bits more resolution rather than an unbounded weight gain.
MIN_SCALE = 1.0 / 4096
_CHANNEL_KEEPING = {"MaxPool", "Identity"}  # pass-through ops that keep each channel on its own


def depthwise(node: Any, w: np.ndarray) -> bool:
    """Whether ``node`` is a depthwise Conv (groups = channels, one input channel per filter)."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return node.op_type == "Conv" and group > 1 and w.ndim >= 2 and w.shape[1] == 1


def equalize_depthwise_inputs(lg: LayerGraph, recipe: Recipe, calib: Calibration, weights: dict[str, np.ndarray],
                              values: dict[str, np.ndarray], added: dict[str, str], plans: dict[str, Any],
                              fixed_groups: list[str], notes: list[str]) -> dict[str, np.ndarray]:
    """Scale the producing convolution and the depthwise convolutions of every eligible activation
    group (see the module docstring). ``values``: initializer values the plan already changed (bias
    correction), ``added``: biases it added, by layer. Updates the weight entries of ``plans`` (scales
    only; integers unchanged) and returns the new initializer values."""
    nodes = {n.name: n for n in lg.producers.values()}
    by_output = {layer.output: layer for layer in lg.layers.values()}
    groups: dict[str, list[str]] = {}
    for t, p in plans.items():
        if p.kind == "activation":
            groups.setdefault(p.group, []).append(t)
    out: dict[str, np.ndarray] = {}
    changed = []
    for root, members in groups.items():
        producer = by_output.get(root)
        readers = _depthwise_readers(members, lg, weights)
        if (root in fixed_groups or isinstance(plans[root].spec.range, ClipRange) or plans[root].spec.power_of_two
                or any(t in recipe.tensors for t in members) or producer is None or not readers
                or not _scalable(producer, nodes, lg, weights, plans)
                or not all(_scalable_weight(r.weight, lg, weights, plans) for r in readers)):
            continue
        s = _channel_scales(members, calib, plans[root].lo, plans[root].hi)
        if s is None or s.size != weights[producer.weight].shape[0]:
            continue
        _scale(producer.weight, 1.0 / s, weights, plans, out)
        bias = producer.bias or added.get(producer.name)
        if bias is not None:
            b = values[bias] if bias in values else weights[bias]
            out[bias] = (np.asarray(b, np.float64) / s).astype(np.float32)
        for r in readers:
            w = weights[r.weight]
            _scale(r.weight, np.repeat(s, w.shape[0] // s.size), weights, plans, out)
        changed.append(root)
    if changed:
        notes.append(f"{len(changed)} activation(s) read only by depthwise convolutions are equalized (e.g. "
                     f"{changed[0]!r}): channel c of the convolution producing it is divided by s_c and the "
                     "depthwise filters reading it multiplied by s_c, so one scale per tensor gives each channel "
                     "its own range; Recipe.depthwise_equalization=False or a tensor override turns it off")
    return out


def _channel_scales(members: list[str], calib: Calibration, lo: float, hi: float) -> np.ndarray | None:
    """``s_c`` of the module docstring from the members' per-channel ranges; None without them."""
    found = [calib.channel_range(t) for t in members]
    if any(r is None for r in found) or len({r[0].shape for r in found}) != 1 or not (lo < 0 or hi > 0):
        return None
    lo_c = np.clip(np.min([r[0] for r in found], axis=0), lo, hi)
    hi_c = np.clip(np.max([r[1] for r in found], axis=0), lo, hi)
    up = hi_c / hi if hi > 0 else np.zeros_like(hi_c)
    down = lo_c / lo if lo < 0 else np.zeros_like(lo_c)
    return np.maximum(np.maximum(up, down), MIN_SCALE).astype(np.float64)


def _scale(name: str, factor: np.ndarray, weights: dict[str, np.ndarray], plans: dict[str, Any],
           out: dict[str, np.ndarray]) -> None:
    """Weight ``name`` times ``factor`` along its output channels (axis 0), and its per-channel scale too."""
    w = weights[name]
    out[name] = (w.astype(np.float64) * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    p = plans[name]
    qp = replace(p.qparams, scale=(np.asarray(p.qparams.scale, np.float64) * factor).astype(np.float32))
    plans[name] = replace(p, qparams=qp)


def _scalable_weight(name: str | None, lg: LayerGraph, weights: dict[str, np.ndarray], plans: dict[str, Any]) -> bool:
    """An integer weight of one layer alone, quantized per output channel (axis 0) with real scales:
    scaling its channels leaves its integers as they are."""
    p = plans.get(name) if name else None
    return (p is not None and p.qparams.axis == 0 and np.asarray(p.qparams.scale).size == weights[name].shape[0]
            and not p.spec.power_of_two and len(lg.consumers.get(name, [])) == 1)


def _scalable(layer: Layer, nodes: dict, lg: LayerGraph, weights: dict[str, np.ndarray], plans: dict[str, Any]) -> bool:
    """A Conv whose output (after any fused Relu/Clip) may be scaled per channel through its
    weight and bias: weight per output channel, bias its own, Clip bounds constant with 0 inside."""
    if layer.op_type != "Conv" or not _scalable_weight(layer.weight, lg, weights, plans):
        return False
    if layer.bias is not None and len(lg.consumers.get(layer.bias, [])) != 1:
        return False
    for node in (nodes[name] for name in layer.fused):
        if node.op_type == "Clip":
            lo, hi = _bound(node, 1, weights, -np.inf), _bound(node, 2, weights, np.inf)
            if lo is None or hi is None or not lo <= 0 <= hi:
                return False
    return True


def _bound(node: Any, i: int, weights: dict[str, np.ndarray], default: float) -> float | None:
    """A Clip bound: its constant input ``i``, ``default`` when absent, None when not a constant."""
    if len(node.input) <= i or not node.input[i]:
        return default
    v = weights.get(node.input[i])
    return float(v.ravel()[0]) if v is not None and v.size == 1 else None


def _depthwise_readers(members: list[str], lg: LayerGraph, weights: dict[str, np.ndarray]) -> list[Layer] | None:
    """The depthwise Conv layers reading a group, when they are all of its readers (channel-keeping
    pass-throughs to other members aside); None otherwise."""
    readers = []
    for t in members:
        consumers = lg.consumers.get(t, [])
        if not consumers or t in lg.graph_outputs:
            return None
        for n in consumers:
            if n.op_type in _CHANNEL_KEEPING and n.output and n.output[0] in members:
                continue
            w = weights.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
            if w is None or n.input[0] != t or not depthwise(n, w) or n.name not in lg.layers:
                return None
            readers.append(lg.layers[n.name])
    return readers or None
