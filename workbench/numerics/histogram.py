"""A mergeable streaming histogram with a fixed number of bins and exact running statistics.

Range layout. Bins have width ``w = 2^e`` and edges on the integer multiples of ``w``
(``edges = (k0 + arange(bins + 1)) · w``), so 0 is always an edge and any two histograms'
grids nest. The grid starts at the lowest occupied bin and spans ``bins · w``; when data
falls outside, ``e`` grows by one (pairs of bins merge exactly: absolute bin ``k`` → ``k >> 1``)
until everything fits, and/or the grid slides. ``e`` is always the smallest that fits and the
grid starts at the lowest occupied bin, so the grid and counts depend only on the data, not on
how it was batched or merged, and ``[min, max]`` spans at least about half of the bins: post-ReLU,
all-negative, offset and symmetric tensors all get a grid that hugs them. Nothing but the counts
is kept, so memory does not grow with the number of samples. The width never drops below
``max|x| · 2^-40`` (keeps bin indices exact in int64) nor ``2^-120``.

Outliers. Finite values with ``|x| ≥ outlier_abs`` (default 1e30: the -1e38 / -3.4e38 fill
values of attention masks, never real activations) are not binned: they are tallied in a low and
a high tail (count, min, max, sum), so they cannot wipe out the resolution of the bulk. They
still enter ``min``/``max``/``count``/``mean``/``std`` exactly and appear in :meth:`pieces` and
:meth:`percentile` as a point mass at the tail's mean (exactly at the value when the tail is one
constant, as fill values are).
Set ``outlier_abs=inf`` to bin everything. NaN and ±inf are counted (``nan_count``,
``inf_count``) and otherwise ignored.

Statistics are exact: ``mean`` and the sum of squared deviations are combined across batches
and merges with Chan's formula in float64 (the stable form of sum / sum of squares);
``std`` is the population standard deviation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

__all__ = ["Histogram"]

_E_MIN = -120  # narrowest bin 2^-120
_REL_BITS = 40  # bins never narrower than max|x| · 2^-40 (keeps absolute indices < 2^52)


def _shift(k: np.ndarray | int, m: int) -> Any:
    """Absolute bin index after ``m`` doublings of the width (floor division by 2^m)."""
    if isinstance(k, np.ndarray):
        return k >> min(m, 63)
    return k >> m


def _ceil_log2(v: float) -> int:
    mant, ex = math.frexp(v)
    return ex - 1 if mant == 0.5 else ex


def _chan(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    """Combine (count, mean, sum of squared deviations) of two disjoint sets."""
    na, ma, qa = a
    nb, mb, qb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    d = mb - ma
    return n, ma + d * (nb / n), qa + qb + d * d * (na / n) * nb


def _moments(a: np.ndarray) -> tuple[int, float, float]:
    """(n, mean, M2 = Σ(x − mean)²) of a flat array, summed in float64.

    Fast path without a float64 copy: M2 = Σx² − mean·Σx, which loses about Σx²/M2 · 1e-16 relative
    to cancellation; when that exceeds 1e-10 (a mean far from zero in units of the spread) the two-pass
    form on a float64 copy is used instead. einsum sums without BLAS threads."""
    total = float(np.add.reduce(a, dtype=np.float64))
    squares = float(np.einsum("i,i->", a, a, dtype=np.float64))
    mean = total / a.size
    m2 = squares - total * mean
    if m2 > 1e-6 * squares:
        return a.size, mean, m2
    d = a.astype(np.float64)
    mean = float(d.sum()) / d.size
    d -= mean
    return a.size, mean, float(np.einsum("i,i->", d, d))


class Histogram:
    """Streaming histogram of a tensor's values; see the module docstring for the layout."""

    def __init__(self, bins: int = 2048, *, outlier_abs: float = 1e30) -> None:
        if not isinstance(bins, int | np.integer) or bins < 16:
            raise WorkbenchError(f"Histogram(bins={bins!r}): need an integer ≥ 16 (default 2048)")
        if not outlier_abs > 0:
            raise WorkbenchError(f"Histogram(outlier_abs={outlier_abs!r}): must be positive (inf disables)")
        self._bins = int(bins)
        self._outlier_abs = float(outlier_abs)
        self._counts = np.zeros(self._bins, dtype=np.int64)
        self._exp = 0  # bin width 2^exp
        self._k0 = 0  # absolute index of the first bin
        self._binned = 0
        self._bmin, self._bmax = math.inf, -math.inf  # binned values only
        self._stats: tuple[int, float, float] = (0, 0.0, 0.0)  # all finite values
        self._min, self._max = math.inf, -math.inf
        self._zeros = 0
        self._nan = 0
        self._inf = 0
        self._low = [0, math.inf, -math.inf, 0.0]  # outliers ≤ -outlier_abs: count, min, max, sum
        self._high = [0, math.inf, -math.inf, 0.0]

    # -- reading ---------------------------------------------------------------------------
    @property
    def bins(self) -> int:
        return self._bins

    @property
    def outlier_abs(self) -> float:
        return self._outlier_abs

    @property
    def counts(self) -> np.ndarray:
        """Per-bin counts (int64, length ``bins``; a copy)."""
        return self._counts.copy()

    @property
    def bin_width(self) -> float:
        return math.ldexp(1.0, self._exp)

    @property
    def edges(self) -> np.ndarray:
        """Bin edges (float64, length ``bins + 1``)."""
        return np.ldexp((self._k0 + np.arange(self._bins + 1)).astype(np.float64), self._exp)

    @property
    def count(self) -> int:
        """Number of finite values seen (binned plus tail outliers)."""
        return self._stats[0]

    @property
    def min(self) -> float:
        """Exact minimum of the finite values (nan when empty)."""
        return self._min if self.count else math.nan

    @property
    def max(self) -> float:
        return self._max if self.count else math.nan

    @property
    def mean(self) -> float:
        return self._stats[1] if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0)."""
        n, _, m2 = self._stats
        return math.sqrt(max(m2, 0.0) / n) if n else math.nan

    @property
    def mean_square(self) -> float:
        """``E[x²]`` over the finite values (the signal power)."""
        n, mean, m2 = self._stats
        return (m2 / n + mean * mean) if n else math.nan

    @property
    def zero_count(self) -> int:
        return self._zeros

    @property
    def zero_fraction(self) -> float:
        return self._zeros / self.count if self.count else math.nan

    @property
    def nan_count(self) -> int:
        return self._nan

    @property
    def inf_count(self) -> int:
        return self._inf

    @property
    def outlier_counts(self) -> tuple[int, int]:
        """Values in the low (≤ -outlier_abs) and high (≥ outlier_abs) tails."""
        return self._low[0], self._high[0]

    def __repr__(self) -> str:
        return (f"Histogram(count={self.count}, min={self.min:.6g}, max={self.max:.6g}, "
                f"bins={self._bins}, bin_width={self.bin_width:.3g})")

    # -- updating --------------------------------------------------------------------------
    def update(self, x: np.ndarray) -> Histogram:
        """Add the values of ``x`` (any shape); returns ``self``."""
        a = np.asarray(x)
        small = (a.dtype.kind == "f" and a.dtype.itemsize <= 4) or a.dtype.kind == "b" or (
            a.dtype.kind in "iu" and a.dtype.itemsize <= 2)
        a = a.astype(np.float32 if small else np.float64, copy=False).reshape(-1)
        if a.size == 0:
            return self
        mn, mx = float(a.min()), float(a.max())
        if not (math.isfinite(mn) and math.isfinite(mx)):  # a NaN or ±inf shows in min or max
            finite = np.isfinite(a)
            nan = int(np.count_nonzero(np.isnan(a)))
            self._nan += nan
            self._inf += a.size - int(np.count_nonzero(finite)) - nan
            a = a[finite]
            if a.size == 0:
                return self
            mn, mx = float(a.min()), float(a.max())
        self._min, self._max = min(self._min, mn), max(self._max, mx)
        self._stats = _chan(self._stats, _moments(a))
        big = self._outlier_abs
        if mn <= -big or mx >= big:
            for tail, sel in ((self._low, a <= -big), (self._high, a >= big)):
                vals = a[sel]
                if vals.size:
                    tail[0] += vals.size
                    tail[1] = min(tail[1], float(vals.min()))
                    tail[2] = max(tail[2], float(vals.max()))
                    tail[3] += float(vals.sum(dtype=np.float64))
            a = a[(a > -big) & (a < big)]
            if a.size == 0:
                return self
            mn, mx = float(a.min()), float(a.max())
        self._zeros += int(np.count_nonzero(a == 0))
        self._bmin, self._bmax = min(self._bmin, mn), max(self._bmax, mx)
        self._fit(mn, mx)
        self._add(a)
        return self

    def _add(self, a: np.ndarray) -> None:
        inv_w = a.dtype.type(math.ldexp(1.0, -self._exp))
        idx = np.multiply(a, inv_w)
        np.floor(idx, out=idx)
        if abs(self._k0) + self._bins < (1 << 24):  # float subtraction is exact here
            idx -= a.dtype.type(self._k0)
            rel = idx.astype(np.intp)
        else:
            rel = idx.astype(np.int64) - self._k0
        add = np.bincount(rel, minlength=self._bins)
        if add.size != self._bins:  # pragma: no cover - guarded by _fit
            raise AssertionError("histogram binning out of range")
        self._counts += add
        self._binned += a.size

    def _occupied(self) -> tuple[int, int] | None:
        nz = np.flatnonzero(self._counts)
        if nz.size == 0:
            return None
        return self._k0 + int(nz[0]), self._k0 + int(nz[-1])

    def _fit(self, mn: float, mx: float) -> None:
        """Choose (exp, k0) so that the occupied bins and [mn, mx] fit; re-bin if they change."""
        occ = self._occupied()
        amax = max(abs(self._bmin), abs(self._bmax))
        e_floor = max(_E_MIN, _ceil_log2(amax) - _REL_BITS if amax > 0 else _E_MIN)
        if occ is None:
            e = max(e_floor, _ceil_log2((mx - mn) / self._bins) if mx > mn else e_floor)
        else:
            e = max(self._exp, e_floor)
        while True:
            lo = math.floor(math.ldexp(mn, -e))
            hi = math.floor(math.ldexp(mx, -e))
            if occ is not None:
                lo = min(lo, _shift(occ[0], e - self._exp))
                hi = max(hi, _shift(occ[1], e - self._exp))
            if hi - lo + 1 <= self._bins:
                break
            e += 1
        if occ is None:
            self._exp, self._k0 = e, lo
        elif e != self._exp or lo < self._k0 or hi >= self._k0 + self._bins:
            self._counts = _rebin(self._counts, self._k0, self._exp, e, lo)
            self._exp, self._k0 = e, lo

    # -- merging ---------------------------------------------------------------------------
    def copy(self) -> Histogram:
        return Histogram.from_dict(self.to_dict())

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram of both inputs' data (neither input changes); grids may differ."""
        if not isinstance(other, Histogram):
            raise WorkbenchError(f"merge: expected a Histogram, got {type(other).__name__}")
        if (other._bins, other._outlier_abs) != (self._bins, self._outlier_abs):
            raise WorkbenchError(
                f"merge: histograms differ in bins/outlier_abs ({self._bins}, {self._outlier_abs}) vs "
                f"({other._bins}, {other._outlier_abs})")
        out = Histogram(self._bins, outlier_abs=self._outlier_abs)
        out._stats = _chan(self._stats, other._stats)
        out._min, out._max = min(self._min, other._min), max(self._max, other._max)
        out._bmin, out._bmax = min(self._bmin, other._bmin), max(self._bmax, other._bmax)
        out._zeros = self._zeros + other._zeros
        out._nan, out._inf = self._nan + other._nan, self._inf + other._inf
        out._binned = self._binned + other._binned
        for t, a, b in ((out._low, self._low, other._low), (out._high, self._high, other._high)):
            t[:] = [a[0] + b[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3]]
        parts = [(h, h._occupied()) for h in (self, other)]
        parts = [(h, occ) for h, occ in parts if occ is not None]
        if not parts:
            return out
        e = max(h._exp for h, _ in parts)
        while True:
            lo = min(_shift(occ[0], e - h._exp) for h, occ in parts)
            hi = max(_shift(occ[1], e - h._exp) for h, occ in parts)
            if hi - lo + 1 <= out._bins:
                break
            e += 1
        out._exp, out._k0 = e, lo
        for h, _ in parts:
            out._counts += _rebin(h._counts, h._k0, h._exp, e, lo)
        return out

    # -- as a distribution -----------------------------------------------------------------
    def pieces(self, absolute: bool = False, coarsen: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The data as a piecewise-uniform distribution: sorted non-empty pieces ``[a, b]`` with
        counts ``c`` (float64 arrays). Bins are clipped to the exact binned min/max, the exact
        zeros are a point mass (``a == b == 0``) taken out of their bin, outlier tails are point
        masses at their means. ``absolute=True`` describes ``|x|`` (bins folded at 0, exact
        because 0 is an edge); ``coarsen=m`` merges aligned groups of 2^m bins first."""
        e = self._exp + coarsen
        c = self._counts.astype(np.float64)
        k = self._k0 + np.arange(self._bins, dtype=np.int64)
        z = -self._k0
        if 0 <= z < self._bins:
            c[z] -= self._zeros
        nz = np.flatnonzero(c > 0)
        k, c = k[nz], c[nz]
        tails = [(m, m, t[0]) for t in (self._low, self._high) if t[0]
                 for m in [t[1] if t[1] == t[2] else min(max(t[3] / t[0], t[1]), t[2])]]
        if absolute:
            k = np.where(k < 0, -k - 1, k)
            order = np.argsort(k, kind="stable")
            k, c = k[order], c[order]
            tails = [(abs(t[0]), abs(t[1]), t[2]) for t in tails]
        k = _shift(k, coarsen)
        if k.size:
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            k, c = k[starts], np.add.reduceat(c, starts)
        a, b = np.ldexp(k.astype(np.float64), e), np.ldexp((k + 1).astype(np.float64), e)
        if absolute:
            if b.size:
                b[-1] = min(b[-1], max(abs(self._bmin), abs(self._bmax)))
        else:
            if a.size:
                a[0] = max(a[0], self._bmin)
                b[-1] = min(b[-1], self._bmax)
        extra = list(tails)
        if self._zeros:
            extra.append((0.0, 0.0, self._zeros))
        if extra:
            ea, eb, ec = (np.array(v, dtype=np.float64) for v in zip(*extra, strict=True))
            a, b, c = np.r_[a, ea], np.r_[b, eb], np.r_[c, ec]
            order = np.lexsort((b, a))
            a, b, c = a[order], b[order], c[order]
        return a, b, c

    def percentile(self, p: float | np.ndarray) -> float | np.ndarray:
        """Interpolated percentile(s), ``p`` in [0, 100]: the inverse of the piecewise-linear CDF
        of :meth:`pieces` at ``p/100 · count``; 0 → exact min, 100 → exact max."""
        if not self.count:
            raise WorkbenchError("percentile: the histogram is empty")
        pa = np.asarray(p, dtype=np.float64)
        if np.any(~(pa >= 0) | ~(pa <= 100)):
            raise WorkbenchError(f"percentile({p!r}): p must be in [0, 100]")
        out = inverse_cdf(*self.pieces(), pa / 100.0 * self.count)
        out = np.where(pa <= 0, self.min, np.where(pa >= 100, self.max, out))
        return float(out) if out.ndim == 0 else out

    # -- saving ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`from_dict` restores it exactly."""
        def f(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "bins": self._bins, "outlier_abs": f(self._outlier_abs),
            "exp": self._exp, "k0": self._k0, "counts": self._counts.tolist(), "binned": self._binned,
            "bmin": f(self._bmin), "bmax": f(self._bmax), "min": f(self._min), "max": f(self._max),
            "n": self._stats[0], "mean": self._stats[1], "m2": self._stats[2], "zeros": self._zeros,
            "nan": self._nan, "inf": self._inf,
            "low": [self._low[0], f(self._low[1]), f(self._low[2]), self._low[3]],
            "high": [self._high[0], f(self._high[1]), f(self._high[2]), self._high[3]],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        try:
            oa = d["outlier_abs"]
            h = cls(int(d["bins"]), outlier_abs=math.inf if oa is None else float(oa))
            counts = np.asarray(d["counts"], dtype=np.int64)
            if counts.shape != (h._bins,) or np.any(counts < 0):
                raise WorkbenchError(f"histogram: 'counts' must hold {h._bins} non-negative integers")

            def g(v: float | None, default: float) -> float:
                return default if v is None else float(v)

            h._counts = counts
            h._exp, h._k0, h._binned = int(d["exp"]), int(d["k0"]), int(d["binned"])
            h._bmin, h._bmax = g(d["bmin"], math.inf), g(d["bmax"], -math.inf)
            h._min, h._max = g(d["min"], math.inf), g(d["max"], -math.inf)
            h._stats = (int(d["n"]), float(d["mean"]), float(d["m2"]))
            h._zeros, h._nan, h._inf = int(d["zeros"]), int(d["nan"]), int(d["inf"])
            h._low, h._high = ([int(t[0]), g(t[1], math.inf), g(t[2], -math.inf), float(t[3])]
                               for t in (d["low"], d["high"]))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            if isinstance(e, WorkbenchError):
                raise
            raise WorkbenchError(f"histogram: malformed saved state ({e!r})") from None
        if int(h._counts.sum()) != h._binned:
            raise WorkbenchError("histogram: saved counts do not add up to the binned total")
        return h


def _rebin(counts: np.ndarray, k0: int, e_old: int, e_new: int, k0_new: int) -> np.ndarray:
    """Counts moved exactly onto the grid (2^e_new, k0_new), e_new ≥ e_old."""
    out = np.zeros_like(counts)
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return out
    new = _shift(k0 + nz.astype(np.int64), e_new - e_old) - k0_new
    if new[0] < 0 or new[-1] >= counts.size:  # pragma: no cover - guarded by the callers
        raise AssertionError("re-binned counts fall outside the grid")
    starts = np.flatnonzero(np.r_[True, new[1:] != new[:-1]])
    out[new[starts]] = np.add.reduceat(counts[nz], starts)
    return out


def inverse_cdf(a: np.ndarray, b: np.ndarray, c: np.ndarray, rank: np.ndarray | float) -> np.ndarray:
    """Position where the cumulative count of sorted pieces ``([a, b], c)`` reaches ``rank``
    (linear inside a piece; a point piece jumps)."""
    cum = np.cumsum(c)
    r = np.asarray(rank, dtype=np.float64)
    i = np.clip(np.searchsorted(cum, r, side="left"), 0, cum.size - 1)
    start = cum[i] - c[i]
    frac = np.clip((r - start) / c[i], 0.0, 1.0)
    return a[i] + frac * (b[i] - a[i])
