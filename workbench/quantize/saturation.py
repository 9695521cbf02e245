"""Where onnxruntime's uint8×int8 kernels would saturate on x86 CPUs without VNNI.

With default session options onnxruntime fuses ``DQ → Conv/Gemm/MatMul → Q`` into
``QLinearConv``/``QGemm``/``QLinearMatMul``. On x86 without VNNI (AVX2, AVX-512BW) the uint8
activation × int8 weight kernels multiply with ``vpmaddubsw``, which adds the two products of
each *pair* of consecutive reduction elements ``a[2j]·w[2j] + a[2j+1]·w[2j+1]`` into a
saturating int16: with a raw uint8 activation up to 255 and weights up to ±127 the pair can
exceed 32767 and is silently clipped. Measured on the bundled demo, that took the output SQNR
from 41.3 dB (exact) to 21.1 dB (deployed). uint8×uint8 kernels widen to 16 bits before
multiplying (no saturation) but run ~30 % slower, and depthwise convolutions use a kernel that
accumulates in int32.

So the ``ort-cpu`` target stores a layer's weights as **uint8 with zero-point 128** (the same
integers shifted by 128: identical dequantized values, so the exact arithmetic does not change
at all) only where the calibration data says saturation is likely. The risk of a layer is an
upper bound on the expected number of saturating pairs per output element: a same-sign pair of
weights ``(w1, w2)`` with ``255·(|w1| + |w2|) > 32767`` can saturate only when one of its two
activations exceeds ``t = 32767 / (|w1| + |w2|)`` in raw uint8 units, so (union bound, and the
per-tensor histogram standing in for every channel)
``risk = mean over output channels of Σ_pairs 2·P(a > t)``. Pairs follow the kernels' reduction
order: Conv weights ``[O, C, kh, kw]`` as ``[O, kh, kw, C]`` (channels innermost, as onnxruntime's
NHWC im2col), Gemm/MatMul along K. Layers with ``risk > RISK_THRESHOLD`` get uint8 weights.
Measured (benchmarks/deployed_speed.py, docs/ort-cpu.md): this keeps deployed within 0.5 dB of
exact on the demo and the zoo models while converting only the layers that need it (the demo's
first convolution, reading saturated pixels, carries most of the loss).
"""

from __future__ import annotations

import numpy as np

from workbench.numerics.histogram import Histogram

#: Expected saturating pairs per output element above which a layer's weights are stored as uint8.
RISK_THRESHOLD = 0.01

_POS_LIMIT, _NEG_LIMIT = 32767, 32768


def tail_fraction(hist: Histogram, v: float) -> float:
    """Fraction of the histogram's values above ``v`` (linear inside a bin)."""
    return float(tail_fractions(hist, np.array([v]))[0])


def tail_fractions(hist: Histogram, vs: np.ndarray) -> np.ndarray:
    """:func:`tail_fraction` at every value of ``vs`` (one pass over the histogram's pieces)."""
    vs = np.asarray(vs, dtype=np.float64)
    if hist.count == 0:
        return np.zeros(vs.shape)
    a, b, c = hist.pieces()
    v = vs[:, None]
    width = np.where(b > a, b - a, 1.0)
    inside = np.clip((b - v) / width, 0.0, 1.0)  # share of each piece above v
    above = np.where(a > v, 1.0, np.where(b > v, inside, 0.0))
    return (above @ c) / hist.count


def reduction_matrix(w_int: np.ndarray, op_type: str, weight_axis: int | None) -> np.ndarray:
    """Integer weights as ``(output channels, K)`` in the kernels' reduction order."""
    w = np.asarray(w_int, dtype=np.int64)
    if op_type == "Conv":
        return np.moveaxis(w, 1, -1).reshape(w.shape[0], -1)
    axis = (weight_axis if weight_axis is not None else w.ndim - 1) % w.ndim
    if w.ndim == 2 and axis == 0:  # Gemm transB: [N, K]
        return w
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)


def saturation_risk(hist: Histogram, scale: float, zero_point: int, w_int: np.ndarray, op_type: str,
                    weight_axis: int | None, *, raw_offset: int = 0) -> float:
    """Upper bound on expected saturating pairs per output element (see the module docstring).

    ``hist``: the float activation feeding the layer; ``scale``/``zero_point``: its uint8 grid
    (``raw_offset=128`` for int8 activations, which onnxruntime shifts to uint8 on x86);
    ``w_int``: the layer's int8 weights."""
    m = reduction_matrix(w_int, op_type, weight_axis)
    if m.shape[1] % 2:
        m = np.pad(m, ((0, 0), (0, 1)))
    pos, neg = np.maximum(m, 0), np.maximum(-m, 0)
    total = 0.0
    for sums, limit in ((pos[:, 0::2] + pos[:, 1::2], _POS_LIMIT), (neg[:, 0::2] + neg[:, 1::2], _NEG_LIMIT)):
        values, counts = np.unique(sums[sums * 255 > limit], return_counts=True)
        if values.size:
            raw = limit / values  # a raw uint8 activation above this can saturate the pair
            total += 2.0 * float(counts @ tail_fractions(hist, (raw - raw_offset - zero_point) * scale))
    return total / max(m.shape[0], 1)
