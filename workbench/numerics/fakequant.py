"""Quantize, dequantize and fake-quantize exactly as onnxruntime's QuantizeLinear /
DequantizeLinear (opset 21, CPU) do.

``q = clip(round_half_even(x / scale) + zero_point, qmin, qmax)`` with ``x / scale`` an IEEE
float32 *division* (not a multiplication by the reciprocal, which differs in the last bit
near ties), NaN → qmin (what onnxruntime's CPU kernel produces), ±inf saturate.
``dequantize(q) = float32(q - zero_point) · scale`` in float32.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import WorkbenchError
from workbench.numerics.qparams import QParams

__all__ = ["dequantize", "fake_quantize", "quantize"]


def _grid(qp: QParams, ndim: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scale (float32) and zero point (float32), shaped to broadcast against the data."""
    if qp.axis is None:
        return qp.scale, qp.zero_point.astype(np.float32)
    axis = qp.axis + ndim if qp.axis < 0 else qp.axis
    if not 0 <= axis < ndim:
        raise WorkbenchError(f"axis {qp.axis}: out of range for an array with {ndim} dimensions")
    if shape[axis] != qp.scale.shape[0]:
        raise WorkbenchError(
            f"per-channel parameters have {qp.scale.shape[0]} channels but axis {qp.axis} of the "
            f"array has length {shape[axis]}")
    bshape = [1] * ndim
    bshape[axis] = -1
    return qp.scale.reshape(bshape), qp.zero_point.astype(np.float32).reshape(bshape)


def quantize(x: np.ndarray, qp: QParams, *, rounding: str = "nearest",
             rng: np.random.Generator | None = None) -> np.ndarray:
    """Integers (``qp.np_dtype``) for ``x`` (taken as float32, like QuantizeLinear's input);
    per-channel parameters broadcast along ``qp.axis``.

    ``rounding="nearest"``: round half to even, bit-exact with onnxruntime.
    ``rounding="stochastic"``: ``floor(v) + 1`` with probability ``v - floor(v)`` (so
    ``E[q] = v`` inside the range), drawn from ``rng`` (a fresh unseeded generator if None).
    """
    x32 = np.asarray(x, dtype=np.float32)
    scale, zp = _grid(qp, x32.ndim, x32.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        v = x32 / scale
        if rounding == "nearest":
            r = np.rint(v)
        elif rounding == "stochastic":
            rng = np.random.default_rng() if rng is None else rng
            r = np.floor(v)
            r += rng.random(v.shape, dtype=np.float32) < (v - r)
        else:
            raise WorkbenchError(f"rounding={rounding!r}: choose 'nearest' or 'stochastic'")
        # clamp before adding the zero point, as onnxruntime does (no float32 rounding of r + zp)
        r = np.clip(r, qp.qmin - zp, qp.qmax - zp)
        r = np.where(np.isnan(r), qp.qmin - zp, r)
    return (r + zp).astype(qp.np_dtype)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    """``float32(q - zero_point) · scale`` (float32), per-channel along ``qp.axis``."""
    qa = np.asarray(q)
    if qa.dtype.kind not in "iu":
        raise WorkbenchError(f"dequantize: expected an integer array, got {qa.dtype}")
    scale, zp = _grid(qp, qa.ndim, qa.shape)
    return (qa.astype(np.int32) - zp.astype(np.int32)).astype(np.float32) * scale


def fake_quantize(x: np.ndarray, qp: QParams, **kw: object) -> np.ndarray:
    """``dequantize(quantize(x, qp, **kw), qp)``: float32 values on the grid."""
    return dequantize(quantize(x, qp, **kw), qp)  # type: ignore[arg-type]
