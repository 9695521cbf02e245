"""Expected quantization error of a grid on a histogram, without touching the data.

The histogram is read as a piecewise-uniform distribution (:meth:`Histogram.pieces`: bins
clipped to the exact min/max, exact zeros as a point mass at 0). For a grid with step ``s``
and clip range ``[L, H]`` (dequantized qmin/qmax), each piece ``[a, b]`` with ``c`` values
contributes, per element of the tensor:

* clipping, the part beyond ``H`` (likewise below ``L``), exactly for a uniform density:
  ``c/(b-a) · ∫ (x - H)² dx = c · len/(b-a) · (p² + pq + q²)/3`` with ``p, q`` the ends of that
  part minus ``H``;
* rounding, the part inside ``[L, H]``: ``c/(b-a) · ∫ d(x)² dx`` where ``d`` is the distance to
  the nearest grid point ``k·s`` (``L`` and ``H`` are grid points; 0 is one too). With
  ``u = x/s`` the integral is ``s³ · (G(u_b) - G(u_a))`` with ``G(u) = r/12 + (u - r)³/3``,
  ``r = round(u)`` (each whole step adds 1/12). Bins much wider than the step give ``≈ s²/12``;
  bins narrower than the step (zoomed in) get the exact position-dependent error;
* point pieces (zero width: exact zeros, constant tensors, outlier tails) are quantized
  exactly, float32 dequantization included.

NaN and ±inf are not part of the histogram's count and are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError
from workbench.numerics.histogram import Histogram
from workbench.numerics.qparams import QParams

__all__ = ["ErrorEstimate", "expected_error", "grid_errors"]


@dataclass(frozen=True)
class ErrorEstimate:
    """Expected per-element squared errors of quantizing the histogram's data with one grid.

    ``mse = clip_mse + round_mse``; ``sqnr_db = 10·log10(signal_power / mse)`` with
    ``signal_power = E[x²]`` (+inf when mse is 0); ``rmse_over_scale = sqrt(mse) / scale``
    (≈ 0.289 = sqrt(1/12) for a healthy, unclipped grid)."""

    clip_mse: float
    round_mse: float
    mse: float
    clipped_fraction: float
    signal_power: float
    sqnr_db: float
    rmse_over_scale: float


def _G(u: np.ndarray) -> np.ndarray:
    """``∫_0^u (t - round(t))² dt = r/12 + (u - r)³/3`` with ``r = round(u)`` (any sign)."""
    r = np.rint(u)
    t = u - r
    return r / 12.0 + t * t * t / 3.0


_CHUNK = 16  # grids per block: keeps the (K, pieces) temporaries in cache


def grid_errors(pieces: tuple[np.ndarray, np.ndarray, np.ndarray], lo: np.ndarray, hi: np.ndarray,
                scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summed (not averaged) clipping error, rounding error and clipped count of ``pieces`` for a
    batch of K grids (``lo``, ``hi``, ``scale``: shape (K,)); each result has shape (K,)."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in pieces)
    L, H, S = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (lo, hi, scale))
    point = b <= a
    pa, pc = a[point], c[point]
    a, b, c = a[~point], b[~point], c[~point]
    dens = c / (b - a)  # count per unit length
    out = np.zeros((3, L.size))
    for i in range(0, L.size, _CHUNK):
        blk = slice(i, i + _CHUNK)
        Lk, Hk, Sk = L[blk, None], H[blk, None], S[blk, None]
        out[:, blk] = _interval_errors(a, b, dens, Lk, Hk, Sk)
        if pa.size:
            out[:, blk] += _point_errors(pa, pc, Lk, Hk, Sk)
    return out[0], out[1], out[2]


def _point_errors(x: np.ndarray, c: np.ndarray, L: np.ndarray, H: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Point masses are quantized for real, float32 dequantization included (matters for the
    huge values of mask fill values, where float32 rounding of the grid exceeds the signal)."""
    out = (x < L) | (x > H)
    k = np.rint(np.clip(x, L, H) / S).astype(np.float32)
    err = (x - (k * S.astype(np.float32)).astype(np.float64)) ** 2
    clip = np.where(out, err, 0.0)
    rnd = np.where(out, 0.0, err)
    return np.stack([(c * clip).sum(axis=1), (c * rnd).sum(axis=1), (c * out).sum(axis=1)])


def _interval_errors(a: np.ndarray, b: np.ndarray, dens: np.ndarray, L: np.ndarray, H: np.ndarray,
                     S: np.ndarray) -> np.ndarray:
    # clipping below L and above H: mean of (x - bound)² over the clipped part, times its length
    q = np.minimum(b, L) - L
    p = np.minimum(a - L, q)
    len_lo = q - p
    p2 = np.maximum(a, H) - H
    q2 = np.maximum(b - H, p2)
    len_hi = q2 - p2
    clip_w = (len_lo * (p * p + p * q + q * q) + len_hi * (p2 * p2 + p2 * q2 + q2 * q2)) / 3.0
    clipped_w = len_lo + len_hi

    # rounding inside [L, H]; grid points are the integer multiples of S (zero is on the grid),
    # so measure from 0, not from L: that keeps precision when |L| ≫ |x| (e.g. -1e38 masks)
    ua = np.minimum(np.maximum(a, L), H) / S
    ub = np.minimum(np.maximum(b, L), H) / S
    gdiff = _G(ub) - _G(ua)
    dot = "kp,p->k"  # einsum, not BLAS: no thread start-up for these small products
    return np.stack([np.einsum(dot, clip_w, dens), (S * S * S)[:, 0] * np.einsum(dot, gdiff, dens),
                     np.einsum(dot, clipped_w, dens)])


def _db(power: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10.0 * math.log10(power / noise) if power > 0 else -math.inf


def expected_error(hist: Histogram, qp: QParams) -> ErrorEstimate:
    """Expected squared error per element of ``fake_quantize(data, qp)`` for the data in ``hist``
    (per-tensor ``qp`` only)."""
    if qp.axis is not None or qp.scale.ndim:
        raise WorkbenchError("expected_error: needs per-tensor parameters (one scale for the histogram)")
    n = hist.count
    if n == 0:
        raise WorkbenchError("expected_error: the histogram is empty")
    lo, hi = qp.clip_range()
    clip, rnd, clipped = grid_errors(hist.pieces(), lo.reshape(1), hi.reshape(1), qp.scale.reshape(1))
    clip_mse, round_mse = float(clip[0]) / n, float(rnd[0]) / n
    mse = clip_mse + round_mse
    power = hist.mean_square
    sqnr = _db(power, mse)
    return ErrorEstimate(
        clip_mse=clip_mse, round_mse=round_mse, mse=mse, clipped_fraction=float(clipped[0]) / n,
        signal_power=power, sqnr_db=sqnr, rmse_over_scale=math.sqrt(mse) / float(qp.scale))
