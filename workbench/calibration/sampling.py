"""Element sampling: observe a fixed-stride slice of each large tensor instead of all of it.

Exposing every activation of a network and histogramming all of it costs several passes over
every element (each pass over an OCR detector's activations takes a quarter of its inference
time on a 2-core CPU), so exact calibration runs at 4–6× the OCR models' own inference time. With
``per_sample = m``, a tensor of ``n`` elements per sample is observed through every ``k``-th
element of its flattened values, ``k`` the smallest prime ≥ ``n / m`` that does not divide ``n``
(1 when ``n < 2m``: small tensors stay exact). The slice is cut inside the onnxruntime graph
(``Reshape → Slice`` with the stride fed at run time), so only ``≈ m`` values per sample and
tensor leave the graph.

Heavy-tailed tensors (hardswish and residual-sum outputs with a few large values) would lose
their extremes to the slice, and min-max style ranges with them. So the first sample is observed
whole and a stride is kept only where its slice of that sample :func:`keeps_range` (covers all
but ``RANGE_TOLERANCE`` of the sample's range); other tensors stay exact.

A prime that does not divide ``n`` divides none of the tensor's dimensions, so the slice walks
across every channel, row and column instead of revisiting one column (a stride of 7 on 7×7
maps would see one column only). Statistics of a sampled tensor (histogram, min/max, mean/std,
zero fraction, per-channel means, min and max) are estimates from ``≈ m · samples`` values; the calibration records the
stride of every tensor (:attr:`~workbench.calibration.Calibration.strides`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench.models.naming import unique_name

#: Default number of values per sample observed of each tensor when sampling.
DEFAULT_PER_SAMPLE = 4096
#: Share of a probe sample's range its slice may miss before the tensor is observed whole.
RANGE_TOLERANCE = 0.1


def stride_for(elements_per_sample: int, per_sample: int | None) -> int:
    """1 (exact) for small tensors or ``per_sample=None``, else the smallest prime ≥ n / per_sample
    that does not divide n."""
    n = int(elements_per_sample)
    if per_sample is None or n < 2 * per_sample:
        return 1
    k = max(2, n // per_sample)
    while n % k == 0 or any(k % p == 0 for p in range(2, int(k ** 0.5) + 1)):
        k += 1
    return k


def keeps_range(values: np.ndarray, stride: int, tolerance: float | None = None) -> bool:
    """Whether ``values[::stride]`` spans ``values``' range up to ``tolerance`` of its width:
    ``(lo_k - lo) + (hi - hi_k) ≤ tolerance · (hi - lo)``."""
    tolerance = RANGE_TOLERANCE if tolerance is None else tolerance
    flat = np.asarray(values).reshape(-1)
    if stride == 1 or not flat.size:
        return True
    part = flat[::stride]
    lo, hi, lo_k, hi_k = float(flat.min()), float(flat.max()), float(part.min()), float(part.max())
    return (lo_k - lo) + (hi - hi_k) <= tolerance * (hi - lo)


class SampledGraph:
    """A copy of ``proto`` whose outputs are, per tensor of ``tensors``, its flattened values sliced
    with a run-time stride (input :attr:`stride_inputs`), plus the run-time shapes of ``shaped``
    (what per-channel statistics need to map sampled positions back to channels)."""

    def __init__(self, proto: onnx.ModelProto, tensors: Sequence[str], shaped: Sequence[str] = ()) -> None:
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(proto)
        g = self.proto.graph
        used = {t.name for t in g.initializer} | {i.name for i in g.input} | {o for n in g.node for o in n.output}
        used |= {n.name for n in g.node}
        flat, zero, end = (unique_name(f"workbench_sample/{s}", used) for s in ("flat", "zero", "end"))
        g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), flat),
                              numpy_helper.from_array(np.array([0], np.int64), zero),
                              numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), end)])
        self.sliced: dict[str, str] = {}  # tensor -> its sliced output
        self.shapes: dict[str, str] = {}  # tensor -> its Shape output
        self.stride_inputs: dict[str, str] = {}  # tensor -> the int64[1] input holding its stride
        del g.output[:]
        for t in tensors:
            k = unique_name(f"{t}/workbench_stride", used)
            f = unique_name(f"{t}/workbench_flat", used)
            s = unique_name(f"{t}/workbench_sample", used)
            g.input.append(helper.make_tensor_value_info(k, TensorProto.INT64, [1]))
            g.node.append(helper.make_node("Reshape", [t, flat], [f], name=unique_name(f"{f}_node", used)))
            g.node.append(helper.make_node("Slice", [f, zero, end, zero, k], [s], name=unique_name(f"{s}_node", used)))
            g.output.append(helper.make_empty_tensor_value_info(s))
            self.sliced[t], self.stride_inputs[t] = s, k
        for t in shaped:
            out = unique_name(f"{t}/workbench_shape", used)
            g.node.append(helper.make_node("Shape", [t], [out], name=unique_name(f"{out}_node", used)))
            g.output.append(helper.make_tensor_value_info(out, TensorProto.INT64, None))
            self.shapes[t] = out

    def stride_feed(self, strides: dict[str, int]) -> dict[str, np.ndarray]:
        """The stride inputs for ``strides`` (tensor -> k; missing tensors get 1)."""
        return {name: np.array([strides.get(t, 1)], np.int64) for t, name in self.stride_inputs.items()}


def channel_of_sample(shape: Sequence[int], axis: int, stride: int, count: int) -> np.ndarray:
    """Channel index (along ``axis`` of a C-ordered tensor of ``shape``) of the elements at flat
    positions ``0, stride, 2·stride, …`` (``count`` of them)."""
    axis %= len(shape)
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return (np.arange(count, dtype=np.int64) * stride // inner) % int(shape[axis])
