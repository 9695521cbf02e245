"""Clip ranges from a histogram (activations) or an array (weights) for the recipe's rules.

* ``MinMax``: the exact observed ``(min, max)``; the symmetric widening to ``±max|x|`` and the
  asymmetric widening to contain 0 happen in :func:`compute_qparams`.
* ``Percentile(p)``: symmetric ``±t`` with ``t`` the p-th percentile of ``|x|``; asymmetric
  ``(percentile((100-p)/2), percentile(100 - (100-p)/2))``: each tail loses ``(100-p)/2`` %,
  as onnxruntime's percentile calibrator does. Percentiles interpolate the histogram's CDF.
* ``Entropy``: TensorRT's KL calibration (the legacy formulation of pytorch-quantization).
  On the histogram of ``|x|`` (symmetric) — bins of width ``w`` from 0, exact zeros removed
  since they quantize exactly — each candidate keeps ``i`` bins (``i`` from ``n_q`` to all): the
  reference ``P`` is those bins with everything beyond folded into the last one, ``Q`` merges
  the ``i`` bins into ``n_q`` levels and spreads each level evenly over its non-empty bins;
  the threshold ``i·w`` with the least ``KL(P‖Q)`` wins (ties: the larger). ``n_q = 2^(bits-1)``
  (128 for int8). Asymmetric: each side that has data is searched on its own, with
  ``n_q = 2^bits`` if the other side is empty (post-ReLU) and ``2^(bits-1)`` otherwise. Needs
  more occupied bins than ``n_q``; otherwise (e.g. 16-bit) it returns the min-max range. Data
  far from 0 gets its ``|x|`` axis coarsened (exactly) to at most ``bins`` bins; candidates are
  strided if ``bins · n_q`` would exceed 2^24.
* ``Mse``: the range with the least expected clipping + rounding error
  (:mod:`workbench.numerics.error_model`) over candidate thresholds ``max·2^(-j/8)``
  (j = 0…96, so min-max is always a candidate) on the histogram coarsened to ~512 bins, then
  refined linearly around the best on the full histogram; symmetric: one threshold,
  asymmetric: two rounds of coordinate descent on ``hi`` and ``lo`` starting from min-max
  widened to contain 0.
* ``Auto``: the one of min-max, percentile (99.99), entropy and MSE with the least expected
  error (ties go to the earlier rule in that order).
* ``ClipRange(lo, hi)``: returned as given.

Nothing is cached here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from workbench.errors import WorkbenchError
from workbench.numerics.error_model import ErrorEstimate, expected_error, grid_errors
from workbench.numerics.histogram import Histogram, inverse_cdf
from workbench.numerics.qparams import SUPPORTED_BITS, compute_qparams
from workbench.recipe import Auto, ClipRange, Entropy, MinMax, Mse, Percentile, RangeRule

__all__ = ["array_clip_range", "candidate_ranges", "clip_range"]

_STEPS_PER_OCTAVE = 8
_OCTAVES = 12


def clip_range(hist: Histogram, rule: RangeRule, *, bits: int, symmetric: bool,
               signed: bool) -> tuple[float, float]:
    """``(lo, hi)`` for ``rule`` on the data in ``hist``; see the module docstring."""
    if bits not in SUPPORTED_BITS:
        raise WorkbenchError(f"bits={bits!r}: only 4, 8 and 16-bit integer grids are supported")
    if isinstance(rule, ClipRange):
        if rule.per_channel:
            raise WorkbenchError("a ClipRange with one value per channel applies to per-channel weights, not to "
                                 "one histogram; give one lo and one hi")
        return float(rule.lo), float(rule.hi)  # type: ignore[arg-type]
    if hist.count == 0:
        raise WorkbenchError("clip_range: the histogram holds no finite values; calibrate with data first")
    if isinstance(rule, MinMax):
        return hist.min, hist.max
    if isinstance(rule, Percentile):
        return _percentile(hist, rule.percentile, symmetric)
    if isinstance(rule, Entropy):
        return _entropy(hist, bits, symmetric)
    if isinstance(rule, Mse):
        return _mse(hist, bits, symmetric, signed)
    if isinstance(rule, Auto):
        cands = candidate_ranges(hist, bits=bits, symmetric=symmetric, signed=signed)
        return min(cands.values(), key=lambda v: v[1].mse)[0]
    raise WorkbenchError(f"clip_range: {rule!r} is not a range rule")


def candidate_ranges(hist: Histogram, *, bits: int, symmetric: bool, signed: bool,
                     percentile: float = 99.99) -> dict[str, tuple[tuple[float, float], ErrorEstimate]]:
    """The ranges of min-max, percentile, entropy and MSE with their expected errors (what
    ``Auto`` chooses from), keyed 'minmax', 'percentile', 'entropy', 'mse'."""
    rules: dict[str, RangeRule] = {"minmax": MinMax(), "percentile": Percentile(percentile),
                                   "entropy": Entropy(), "mse": Mse()}
    out = {}
    for name, rule in rules.items():
        lo, hi = clip_range(hist, rule, bits=bits, symmetric=symmetric, signed=signed)
        qp = compute_qparams(lo, hi, bits=bits, signed=signed, symmetric=symmetric)
        out[name] = ((lo, hi), expected_error(hist, qp))
    return out


# -- percentile ------------------------------------------------------------------------------
def _abs_max(hist: Histogram) -> float:
    return max(abs(hist.min), abs(hist.max))


def _percentile(hist: Histogram, p: float, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        t = float(inverse_cdf(*hist.pieces(absolute=True), p / 100.0 * hist.count))
        t = min(t, _abs_max(hist)) if p < 100 else _abs_max(hist)
        return -t, t
    cut = (100.0 - p) / 2.0
    return float(hist.percentile(cut)), float(hist.percentile(100.0 - cut))


# -- entropy ---------------------------------------------------------------------------------
def _side_counts(hist: Histogram) -> tuple[np.ndarray, np.ndarray, float]:
    """Counts of ``|x|`` bins ``[j·w, (j+1)·w)`` for the negative and the non-negative side
    (exact zeros removed) and ``w``: the histogram's width, doubled (merging aligned bins, which
    is exact) while the ``|x|`` axis would need more bins than the histogram has (data far
    from 0)."""
    counts = hist.counts.astype(np.float64)
    k = np.rint(hist.edges[:-1] / hist.bin_width).astype(np.int64)  # absolute bin indices (exact)
    z = np.flatnonzero(k == 0)
    if z.size:
        counts[z[0]] -= hist.zero_count
    j = np.where(k < 0, -k - 1, k)
    shift = 0
    while (int(j.max()) >> shift) + 1 > hist.bins:
        shift += 1
    j >>= shift
    size = int(j.max()) + 1
    neg = k < 0
    n = np.bincount(j[neg], weights=counts[neg], minlength=size)
    p = np.bincount(j[~neg], weights=counts[~neg], minlength=size)
    return n, p, hist.bin_width * 2.0**shift


def _trim(h: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(h)
    return h[: nz[-1] + 1] if nz.size else h[:0]


def _xlogx(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


_KL_BLOCK = 1 << 18  # candidate × level entries per block


def _kl_bins(h: np.ndarray, outliers: float, nq: int) -> int | None:
    """Number of leading bins of ``h`` whose KL-optimal clipping is best (None: degenerate).
    Candidates are strided when ``bins × n_q`` would exceed ~2^24 (e.g. 16 bits on a big
    histogram)."""
    n_bins = h.size
    total = h.sum() + outliers
    if n_bins <= nq or total <= 0:
        return None
    stride = max(1, -(-(n_bins - nq + 1) * (nq + 1) // (1 << 24)))
    cand = np.arange(n_bins, nq - 1, -stride, dtype=np.int64)[::-1]  # always includes all bins
    cs = np.r_[0.0, np.cumsum(h)]
    nzc = np.r_[0, np.cumsum(h > 0)]
    hlogh = np.r_[0.0, np.cumsum(_xlogx(h))]
    step = max(1, _KL_BLOCK // (nq + 1))
    kl = np.concatenate([_kl_block(h, cand[s:s + step], nq, total, cs, nzc, hlogh)
                         for s in range(0, cand.size, step)])
    if not np.isfinite(kl).any():
        return None
    best = np.flatnonzero(kl <= kl.min())[-1]
    return int(cand[best])


def _kl_block(h: np.ndarray, i: np.ndarray, nq: int, total: float, cs: np.ndarray, nzc: np.ndarray,
              hlogh: np.ndarray) -> np.ndarray:
    """KL(P‖Q) for the candidates ``i`` (numbers of kept bins), from prefix sums of ``h``."""
    bnd = (np.arange(nq + 1, dtype=np.int64)[None, :] * i[:, None] + nq - 1) // nq
    s = cs[bnd[:, 1:]] - cs[bnd[:, :-1]]  # level sums, (n_i, nq)
    z = nzc[bnd[:, 1:]] - nzc[bnd[:, :-1]]  # non-empty bins per level
    qtot = cs[i]
    out = total - qtot  # mass beyond the threshold, folded into the last bin
    last = h[i - 1] + out
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = (hlogh[i - 1] + _xlogx(last)) / total - np.log(total)
        logq = np.log(s / (np.maximum(z, 1) * qtot[:, None]))
        plogq = (np.where(s > 0, s * logq, 0.0).sum(axis=1) + out * logq[:, -1]) / total
    kl = plogp - plogq
    return np.where(((h[i - 1] == 0) & (out > 0)) | (qtot <= 0) | ~np.isfinite(kl), np.inf, kl)


def _kl_threshold(h: np.ndarray, outliers: float, nq: int, w: float, side_max: float) -> float:
    i = _kl_bins(_trim(h), outliers, nq)
    return side_max if i is None else min(i * w, side_max)


def _entropy(hist: Histogram, bits: int, symmetric: bool) -> tuple[float, float]:
    neg, pos, w = _side_counts(hist)
    low, high = hist.outlier_counts
    if symmetric:
        amax = _abs_max(hist)
        t = _kl_threshold(neg + pos, low + high, 1 << (bits - 1), w, amax)
        return -t, t
    has_neg, has_pos = hist.min < 0, hist.max > 0
    nq = 1 << (bits - 1) if has_neg and has_pos else 1 << bits
    lo = -_kl_threshold(neg, low, nq, w, -hist.min) if has_neg else hist.min
    hi = _kl_threshold(pos, high, nq, w, hist.max) if has_pos else hist.max
    return lo, hi


# -- mse -------------------------------------------------------------------------------------
Pieces = tuple[np.ndarray, np.ndarray, np.ndarray]


def _mse_of(pieces: Pieces, los: np.ndarray, his: np.ndarray, bits: int, symmetric: bool,
            signed: bool) -> np.ndarray:
    qp = compute_qparams(los, his, bits=bits, signed=signed, symmetric=symmetric, axis=0)
    lo, hi = qp.clip_range()
    clip, rnd, _ = grid_errors(pieces, lo, hi, qp.scale)
    return clip + rnd


def _search(err: Callable[[Pieces, np.ndarray], np.ndarray], coarse: Pieces, fine: Pieces, top: float,
            current: float) -> float:
    """1-D search of ``err(pieces, thresholds) -> errors``: a ladder ``top·2^(-j/8)`` (12 octaves)
    plus ``current`` on a coarsened histogram, then 17 linear steps between the best candidate's
    neighbours (and the best itself) on the full histogram."""
    ladder = top * np.exp2(-np.arange(_STEPS_PER_OCTAVE * _OCTAVES + 1) / _STEPS_PER_OCTAVE)
    cand = np.r_[ladder, current]
    best = cand[int(np.argmin(err(coarse, cand)))]
    k = int(np.argmin(np.abs(ladder - best)))
    below, above = ladder[min(k + 1, ladder.size - 1)], ladder[max(k - 1, 0)]
    fine_cand = np.r_[np.linspace(below, above, 17), best, current]
    return float(fine_cand[int(np.argmin(err(fine, fine_cand)))])


def _mse(hist: Histogram, bits: int, symmetric: bool, signed: bool) -> tuple[float, float]:
    fine = hist.pieces()
    coarse = hist.pieces(coarsen=max(0, (hist.bins // 512).bit_length() - 1))
    if symmetric:
        amax = _abs_max(hist)
        if amax == 0:
            return 0.0, 0.0
        t = _search(lambda p, ts: _mse_of(p, -ts, ts, bits, True, signed), coarse, fine, amax, amax)
        return -t, t
    lo, hi = min(hist.min, 0.0), max(hist.max, 0.0)  # the grid contains 0 anyway

    def with_lo(p: Pieces, ts: np.ndarray, lo: float) -> np.ndarray:
        return _mse_of(p, np.full_like(ts, lo), ts, bits, False, signed)

    def with_hi(p: Pieces, ts: np.ndarray, hi: float) -> np.ndarray:
        return _mse_of(p, -ts, np.full_like(ts, hi), bits, False, signed)

    for _ in range(2):
        if hi > 0:
            hi = _search(functools.partial(with_lo, lo=lo), coarse, fine, hist.max, hi)
        if lo < 0:
            lo = -_search(functools.partial(with_hi, hi=hi), coarse, fine, -hist.min, -lo)
    return float(lo), float(hi)


# -- arrays (weights) ------------------------------------------------------------------------
def array_clip_range(x: np.ndarray, rule: RangeRule, *, bits: int, symmetric: bool, signed: bool,
                     axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clip range of an array, per tensor (arrays of shape ()) or one per slice along ``axis``
    (shape (C,)). MinMax and Percentile are exact on the values (``np.quantile``, linear);
    Entropy, Mse and Auto build a histogram per slice and apply :func:`clip_range`."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        raise WorkbenchError("array_clip_range: the array is empty")
    if not np.all(np.isfinite(a)):
        raise WorkbenchError("array_clip_range: the array holds NaN or inf values")
    if axis is None:
        flat = a.reshape(1, -1)
    else:
        if not -a.ndim <= axis < a.ndim:
            raise WorkbenchError(f"array_clip_range: axis {axis} is out of range for shape {a.shape}")
        flat = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    if isinstance(rule, ClipRange):
        given = np.asarray(rule.lo, np.float64).reshape(-1), np.asarray(rule.hi, np.float64).reshape(-1)
        if given[0].size not in (1, flat.shape[0]) or (rule.per_channel and axis is None):
            raise WorkbenchError(f"ClipRange with {given[0].size} values for an array with "
                                 f"{flat.shape[0] if axis is not None else 'no'} channels; give one value per channel "
                                 "along the weight's channel axis (per-channel granularity) or one value")
        lo, hi = (np.broadcast_to(v, (flat.shape[0],)) for v in given)
    elif isinstance(rule, MinMax):
        lo, hi = flat.min(axis=1), flat.max(axis=1)
    elif isinstance(rule, Percentile):
        if symmetric:
            hi = np.quantile(np.abs(flat), rule.percentile / 100.0, axis=1)
            lo = -hi
        else:
            cut = (100.0 - rule.percentile) / 200.0
            lo, hi = np.quantile(flat, [cut, 1.0 - cut], axis=1)
    else:
        pairs = [clip_range(Histogram().update(row), rule, bits=bits, symmetric=symmetric, signed=signed)
                 for row in flat]
        lo, hi = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if axis is None:
        return np.asarray(lo[0], dtype=np.float64), np.asarray(hi[0], dtype=np.float64)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
