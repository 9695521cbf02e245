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

The risk of a layer is an upper bound on the expected number of saturating pairs per output
element: a same-sign pair of weights ``(w1, w2)`` with ``255·(|w1| + |w2|) > 32767`` can
saturate only when one of its two activations exceeds ``t = 32767 / (|w1| + |w2|)`` in raw
uint8 units, so (union bound) ``risk = mean over output channels of Σ_pairs 2·P(a > t)``, each
channel's tail taken from the tensor histogram scaled to that channel's calibrated width. Pairs
follow the kernels' reduction order: Conv weights ``[O, C, kh, kw]`` as ``[O, kh, kw, C]``
(channels innermost, as onnxruntime's NHWC im2col), Gemm/MatMul along K.

The ``ort-cpu`` target makes each layer with ``risk > RISK_THRESHOLD`` saturation-free, in one
of two ways (a layer with ``FIT_RISK_THRESHOLD < risk ≤ RISK_THRESHOLD`` takes only the first,
where it is cheap):

- **pair-fitted int8 scales** (:func:`pair_fit_scales`): each output channel's step grows until
  no same-sign pair of its integers exceeds 128 steps, so no input can saturate and onnxruntime
  keeps its fast uint8×int8 kernels. Used where the predicted output noise of the layer grows by
  at most the target's ``pair_fit_noise`` (:func:`noise_ratio`; ``ort-cpu``: 12 %);
- otherwise **uint8 weights with zero-point 128**: the same integers shifted by 128, identical
  dequantized values (the exact arithmetic does not change at all), run by the uint8×uint8
  kernels, which widen to 16 bits before multiplying but are ~30 % slower.

Measured (benchmarks/deployed_speed.py, docs/ort-cpu.md): deployed stays within 0.5 dB of exact
on the demo and the zoo models. uint8 weights alone on every at-risk layer made hand landmark
1.21–1.22× slower than onnxruntime's own file; with pair-fitted scales where they are cheap it
is 1.07×, at the same exact SQNR within the model's scatter. Layers reading saturated pixels
(the first convolutions) keep uint8 weights: their weight rounding dominates their noise.
"""

from __future__ import annotations

import numpy as np

from workbench.numerics.histogram import Histogram

#: Expected saturating pairs per output element above which a layer is made saturation-free,
#: by pair-fitted scales or else uint8 weights.
RISK_THRESHOLD = 0.01
#: Above this (and up to :data:`RISK_THRESHOLD`) a layer takes pair-fitted scales when they are
#: cheap, and stays as it is otherwise: rare saturation is not worth the uint8 kernels' time.
#: MiniLM (default recipe): exact vs deployed 0.42 dB with 0.01 alone, −0.01 dB with this.
FIT_RISK_THRESHOLD = 0.003

_POS_LIMIT, _NEG_LIMIT = 32767, 32768


def tail_fraction(hist: Histogram, v: float) -> float:
    """Fraction of the histogram's values above ``v`` (linear inside a bin)."""
    return float(tail_fractions(hist, np.array([v]))[0])


def tail_fractions(hist: Histogram, vs: np.ndarray) -> np.ndarray:
    """:func:`tail_fraction` at every value of ``vs`` (binary search over the sorted pieces)."""
    vs = np.asarray(vs, dtype=np.float64)
    if hist.count == 0:
        return np.zeros(vs.shape)
    a, b, c = hist.pieces()
    above = np.r_[np.cumsum(c[::-1])[::-1], 0.0]  # counts of pieces i.. (whole)
    j = np.searchsorted(a, vs, side="right")  # first piece starting above v
    out = above[j]
    i = np.clip(j - 1, 0, len(a) - 1)  # the piece that may hold v inside
    width = b[i] - a[i]
    inside = (j > 0) & (b[i] > vs) & (width > 0)
    out = out + np.where(inside, c[i] * (b[i] - vs) / np.where(width > 0, width, 1.0), 0.0)
    return out / hist.count


def reduction_matrix(w: np.ndarray, op_type: str, weight_axis: int | None) -> np.ndarray:
    """Weights as ``(output channels, K)`` in the kernels' reduction order (integers as int64)."""
    w = np.asarray(w)
    if w.dtype.kind in "iu":
        w = w.astype(np.int64)
    if op_type == "Conv":
        return np.moveaxis(w, 1, -1).reshape(w.shape[0], -1)
    axis = (weight_axis if weight_axis is not None else w.ndim - 1) % w.ndim
    if w.ndim == 2 and axis == 0:  # Gemm transB: [N, K]
        return w
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)


def reduction_channels(w_int: np.ndarray, op_type: str, weight_axis: int | None, in_channels: int) -> np.ndarray:
    """The input channel each entry of :func:`reduction_matrix` multiplies, ``(output channels, K)``
    (a Conv with ``in_channels / w.shape[1]`` groups reads its own group's channels)."""
    w = np.asarray(w_int)
    if op_type == "Conv":
        out, per_group = w.shape[0], w.shape[1]
        groups = max(in_channels // max(per_group, 1), 1)
        offset = np.arange(out) // max(out // groups, 1) * per_group
        return offset[:, None] + np.tile(np.arange(per_group), int(np.prod(w.shape[2:], dtype=np.int64)))[None, :]
    m = reduction_matrix(w_int, op_type, weight_axis)
    return np.broadcast_to(np.arange(m.shape[1]), m.shape)


def same_sign_pairs(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair ``(2j, 2j+1)`` of each row of a :func:`reduction_matrix` (odd K padded with a zero):
    the sum of its positive entries and the sum of its negative entries' magnitudes, what the
    kernels add into one int16 (opposite signs partly cancel and never reach the limit)."""
    if m.shape[1] % 2:
        m = np.pad(m, ((0, 0), (0, 1)))
    pos, neg = np.maximum(m, 0), np.maximum(-m, 0)
    return pos[:, 0::2] + pos[:, 1::2], neg[:, 0::2] + neg[:, 1::2]


def channel_ratios(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How wide each channel is against a typical one, above and below zero: ``hi_c / median(hi)``
    and ``lo_c / median(lo)`` (at least 1/1000), for the per-channel tail model of
    :func:`saturation_risk`."""
    def ratio(v: np.ndarray) -> np.ndarray:
        ref = np.median(v[v > 0]) if np.any(v > 0) else 1.0
        return np.maximum(np.maximum(v, 0.0) / ref, 1e-3)
    return ratio(np.asarray(hi, np.float64)), ratio(-np.asarray(lo, np.float64))


def saturation_risk(hist: Histogram, scale: float, zero_point: int, w_int: np.ndarray, op_type: str,
                    weight_axis: int | None, *, raw_offset: int = 0,
                    channels: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Upper bound on expected saturating pairs per output element (see the module docstring).

    ``hist``: the float activation feeding the layer; ``scale``/``zero_point``: its uint8 grid
    (``raw_offset=128`` for int8 activations, which onnxruntime shifts to uint8 on x86);
    ``w_int``: the layer's int8 weights; ``channels``: the input's per-channel (min, max) along
    the reduced axis, if known. With them, channel ``c`` is taken as the tensor's distribution
    scaled by its width against a typical channel (:func:`channel_ratios`) and never above its
    calibrated maximum: a pair reading a channel twice as wide as most saturates far more often
    than the tensor-wide tail says (MediaPipe's selfie segmenter: a 1×1 conv at a bound of 0.0085
    cost 2.3 dB deployed), one reading narrow channels less often."""
    m = reduction_matrix(w_int, op_type, weight_axis)
    chan = reduction_channels(w_int, op_type, weight_axis, len(channels[0])) if channels is not None else None
    if chan is None or chan.max(initial=0) >= len(channels[0]):  # type: ignore[index]
        channels, chan = None, np.zeros(m.shape, np.int64)
    up, down = channel_ratios(*channels) if channels is not None else (np.ones(1), np.ones(1))
    if chan.shape[1] % 2:
        chan = np.pad(chan, ((0, 0), (0, 1)))
    total = 0.0
    for sums, limit in zip(same_sign_pairs(m), (_POS_LIMIT, _NEG_LIMIT), strict=True):
        risky = sums * 255 > limit
        if not risky.any():
            continue
        values = np.repeat(sums[risky], 2)
        members = np.stack([chan[:, 0::2][risky], chan[:, 1::2][risky]], axis=1).ravel()
        keys, counts = np.unique(values * len(up) + members, return_counts=True)  # (pair sum, channel)
        v, c = keys // len(up), keys % len(up)
        t = ((limit / v) - raw_offset - zero_point) * scale  # an activation above t can saturate the pair
        tails = tail_fractions(hist, t / np.where(t >= 0, up[c], down[c]))
        if channels is not None:  # no channel goes above its calibrated maximum
            tails = np.where(t >= np.asarray(channels[1], np.float64)[c], 0.0, tails)
        total += float(counts @ tails)
    return total / max(m.shape[0], 1)


def pair_fit_scales(w: np.ndarray, op_type: str, weight_axis: int | None, scale: np.ndarray) -> np.ndarray:
    """Weight scales (per output channel, like ``scale``) at which no pair can saturate, whatever the
    activations: ``s_o = max(s_o, P_o / 127)`` with ``P_o`` the largest ``|w1| + |w2|`` over the
    same-sign pairs of row ``o`` in the kernels' reduction order. Rounded, such a pair sums to at
    most ``127 + 1`` steps, and ``255·128 = 32640`` fits in int16. A row whose big weights sit
    beside small ones keeps nearly its 8-bit step (the zoo's at-risk layers: mostly 1.1–1.3× it)."""
    pos, neg = same_sign_pairs(reduction_matrix(w, op_type, weight_axis).astype(np.float64))
    need = np.maximum(pos, neg).max(axis=1, initial=0.0) / 127
    scale = np.asarray(scale, np.float64)
    return np.maximum(scale, need if scale.ndim and scale.size == need.size else need.max(initial=0.0))


def noise_ratio(w: np.ndarray, op_type: str, weight_axis: int | None, old: np.ndarray, new: np.ndarray,
                x_power: float, x_scale: float) -> float:
    """Predicted quantization noise of a layer's output with weight scales ``new`` over that with
    ``old``. Per output channel ``o`` (``K`` reduced inputs, ``E[x²] = x_power``)::

        N_o(s) = s²/12 · K·E[x²]  +  s_x²/12 · ‖w_o‖²      (weight rounding + input rounding)

    Both terms enter the network at the same place, so they travel alike from there: under the
    additive noise model a layer whose ``N`` grows by a factor ``1 + ε`` adds at most
    ``10·log10(1 + ε)`` dB of output noise, even if every layer did the same."""
    m = reduction_matrix(w, op_type, weight_axis).astype(np.float64)
    k, norms = m.shape[1], np.square(m).sum(axis=1)

    def noise(s: np.ndarray) -> float:
        sq = np.square(np.asarray(s, np.float64))
        sq = sq if sq.size == norms.size else np.full(norms.shape, sq.mean())  # per tensor (or another axis)
        return float(np.sum(sq.reshape(norms.shape) * k * x_power + x_scale ** 2 * norms))
    base = noise(old)
    return noise(new) / base if base > 0 else 1.0
