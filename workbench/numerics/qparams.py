"""Quantization parameters: the integer grid ``x ≈ (q - zero_point) · scale``.

Conventions of :func:`compute_qparams`:

* Asymmetric (affine): the range is first widened to contain 0 (``lo ← min(lo, 0)``,
  ``hi ← max(hi, 0)``) so that zero is exactly representable; then
  ``scale = (hi - lo) / (qmax - qmin)`` and
  ``zero_point = clip(round_half_even(qmin - lo / scale), qmin, qmax)`` (computed with the
  float32 scale that is stored).
* Symmetric: ``amax = max(|lo|, |hi|)``, ``scale = amax / (2^(bits-1) - 1)`` (narrow range as in
  TensorRT/AIMET: ±amax map to ±127 for int8), ``zero_point = 0`` for signed types and
  ``2^(bits-1)`` for unsigned ones. The extra code (-128, or 0 for uint8) is still usable.
* ``power_of_two``: the scale is rounded *up* to the next power of two, so the grid never
  covers less than asked. For asymmetric grids the zero point is then chosen, where possible,
  so that the whole widened ``[lo, hi]`` stays inside the grid.
* Degenerate ranges: when the scale would be smaller than float32's smallest normal number
  (``hi == lo == 0``, an all-zero tensor, or a subnormal-sized range) the scale is 1.0, as in
  onnxruntime, and the zero point is the middle of the grid (0 signed, 2^(bits-1) unsigned).
  Scale 1.0 keeps later bias scales (``input_scale · weight_scale``) representable, which a
  tiny scale would not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError

__all__ = ["QParams", "compute_qparams"]

SUPPORTED_BITS = (4, 8, 16)
_F32_TINY = float(np.finfo(np.float32).tiny)
# onnx.TensorProto.DataType values (stable protobuf enum numbers; checked in the tests).
_ONNX_DTYPES = {(8, True): 3, (8, False): 2, (16, True): 5, (16, False): 4, (4, True): 22, (4, False): 21}


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise WorkbenchError(f"bits={bits!r}: only 4, 8 and 16-bit integer grids are supported")


@dataclass(frozen=True)
class QParams:
    """Scale and zero point of one tensor's grid (per-tensor: shape (); per-channel: (C,) along
    ``axis``). ``scale`` is float32, ``zero_point`` holds int64 values in ``[qmin, qmax]``."""

    scale: np.ndarray
    zero_point: np.ndarray
    bits: int
    signed: bool
    axis: int | None = None

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        scale = np.array(self.scale, dtype=np.float32)
        zp = np.asarray(self.zero_point)
        if zp.dtype.kind == "f" and not np.all(zp == np.round(zp)):
            raise WorkbenchError(f"zero_point {zp!r}: must hold integers")
        zp = zp.astype(np.int64)
        if scale.shape != zp.shape or scale.ndim > 1:
            raise WorkbenchError(
                f"scale shape {scale.shape} and zero_point shape {zp.shape}: need equal shapes, () or (C,)")
        if (scale.ndim == 1) != (self.axis is not None):
            raise WorkbenchError("per-channel parameters (shape (C,)) need an axis; per-tensor ones do not")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise WorkbenchError(f"scale {scale!r}: must be finite and positive")
        if np.any(zp < self.qmin) or np.any(zp > self.qmax):
            raise WorkbenchError(f"zero_point {zp!r}: outside [{self.qmin}, {self.qmax}] for this type")
        scale.flags.writeable = False
        zp.flags.writeable = False
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        return (self.bits, self.signed, self.axis) == (other.bits, other.signed, other.axis) and (
            np.array_equal(self.scale, other.scale) and np.array_equal(self.zero_point, other.zero_point))

    def __hash__(self) -> int:
        return hash((self.bits, self.signed, self.axis, self.scale.shape, self.scale.tobytes(),
                     self.zero_point.tobytes()))

    @property
    def qmin(self) -> int:
        """Smallest storable integer: -2^(bits-1) signed, 0 unsigned."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        """Largest storable integer: 2^(bits-1) - 1 signed, 2^bits - 1 unsigned."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def np_dtype(self) -> np.dtype:
        """numpy container type; 4-bit values live in int8/uint8."""
        kind = "int" if self.signed else "uint"
        return np.dtype(f"{kind}{max(self.bits, 8)}")

    @property
    def onnx_dtype(self) -> int:
        """``onnx.TensorProto`` element type: INT8/UINT8/INT16/UINT16/INT4/UINT4."""
        return _ONNX_DTYPES[(self.bits, self.signed)]

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Dequantized ``qmin`` and ``qmax`` (float32, computed exactly as DequantizeLinear does)."""
        lo = (np.int64(self.qmin) - self.zero_point).astype(np.float32) * self.scale
        hi = (np.int64(self.qmax) - self.zero_point).astype(np.float32) * self.scale
        return lo, hi


def _round_up_pow2(scale: np.ndarray) -> np.ndarray:
    mant, exp = np.frexp(scale)  # scale = mant · 2^exp, mant in [0.5, 1)
    return np.ldexp(1.0, np.where(mant == 0.5, exp - 1, exp)).astype(np.float64)


def compute_qparams(lo: float | np.ndarray, hi: float | np.ndarray, *, bits: int, signed: bool,
                    symmetric: bool, power_of_two: bool = False, axis: int | None = None) -> QParams:
    """Grid covering ``[lo, hi]`` (scalars, or arrays of shape (C,) with ``axis`` for per-channel).

    See the module docstring for the exact conventions (narrow symmetric range, zero-width
    ranges → scale 1.0, power-of-two scales rounded up).
    """
    _check_bits(bits)
    lo_a = np.asarray(lo, dtype=np.float64)
    hi_a = np.asarray(hi, dtype=np.float64)
    if lo_a.shape != hi_a.shape or lo_a.ndim > 1:
        raise WorkbenchError(f"lo shape {lo_a.shape}, hi shape {hi_a.shape}: need equal shapes, () or (C,)")
    if not (np.all(np.isfinite(lo_a)) and np.all(np.isfinite(hi_a))):
        raise WorkbenchError(f"range [{lo}, {hi}]: bounds must be finite")
    if np.any(lo_a > hi_a):
        raise WorkbenchError(f"range [{lo}, {hi}]: lo must not exceed hi")
    if axis is None and lo_a.ndim == 1:
        raise WorkbenchError("per-channel ranges (arrays of shape (C,)) need an axis")
    if axis is not None and lo_a.ndim == 0:
        lo_a, hi_a = lo_a.reshape(1), hi_a.reshape(1)

    qmin = -(1 << (bits - 1)) if signed else 0
    qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    mid = 0 if signed else 1 << (bits - 1)
    lo_a = np.minimum(lo_a, 0.0)
    hi_a = np.maximum(hi_a, 0.0)
    # symmetric: narrow range, amax ↦ 2^(bits-1) - 1
    scale = np.maximum(-lo_a, hi_a) / ((1 << (bits - 1)) - 1) if symmetric else (hi_a - lo_a) / (qmax - qmin)
    degenerate = scale < _F32_TINY
    scale = np.where(degenerate, 1.0, scale)
    if power_of_two:
        scale = _round_up_pow2(scale)
    scale32 = scale.astype(np.float32)
    s = scale32.astype(np.float64)
    if symmetric:
        zp = np.full(scale.shape, mid, dtype=np.int64)
    else:
        zp_f = np.rint(qmin - lo_a / s)
        if power_of_two:  # slack from rounding the scale up: keep [lo, hi] fully on the grid if we can
            need_lo, need_hi = np.ceil(qmin - lo_a / s), np.floor(qmax - hi_a / s)
            zp_f = np.where(need_lo <= need_hi, np.clip(zp_f, need_lo, need_hi), zp_f)
        zp = np.clip(zp_f, qmin, qmax).astype(np.int64)
        zp = np.where(degenerate, mid, zp)
    return QParams(scale32, zp, bits, signed, axis)
