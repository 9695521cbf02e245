import json
import math

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.numerics import Histogram

RNG = np.random.default_rng(0)


def _check_binning(h: Histogram, x: np.ndarray) -> None:
    """Counts are exactly np.histogram's on the same edges (the data never hits the top edge)."""
    x = x[np.isfinite(x) & (np.abs(x) < h.outlier_abs)]
    np.testing.assert_array_equal(h.counts, np.histogram(x.astype(np.float64), h.edges)[0])


@pytest.mark.parametrize("kind", ["normal", "relu", "negative", "offset", "tiny", "int"])
def test_one_pass_statistics_and_exact_binning(kind):
    x = RNG.normal(size=100_000).astype(np.float32)
    x = {"normal": x, "relu": np.maximum(x, 0), "negative": -np.abs(x) - 3, "offset": x * 1e-3 + 1000.0,
         "tiny": x * np.float32(1e-30), "int": np.round(x * 10).astype(np.int32)}[kind]
    h = Histogram().update(x)
    xd = x.astype(np.float64)
    assert h.count == x.size and h.counts.sum() == x.size
    assert h.min == xd.min() and h.max == xd.max()
    assert h.mean == pytest.approx(xd.mean(), rel=1e-12, abs=1e-300)
    assert h.std == pytest.approx(xd.std(), rel=1e-9)
    assert h.zero_fraction == np.mean(xd == 0)
    assert h.counts.dtype == np.int64 and h.edges.dtype == np.float64 and h.edges.size == h.bins + 1
    _check_binning(h, xd)
    # the grid hugs the data: [min, max] spans at least about half of the bins
    assert h.edges[0] <= h.min and h.edges[-1] > h.max
    assert (h.max - h.min) >= (h.bins / 2 - 1) * h.bin_width
    if kind == "relu":
        assert h.edges[0] == 0.0 and h.zero_fraction == pytest.approx(0.5, abs=0.01)
    assert h.edges[0] > h.min - h.bin_width


def test_merge_of_halves_equals_one_pass():
    x = np.r_[RNG.normal(size=50_000), RNG.normal(50, 5, size=50_000), np.zeros(100)].astype(np.float32)
    RNG.shuffle(x)
    one = Histogram().update(x)
    a, b = Histogram().update(x[:30_000]), Histogram().update(x[30_000:])
    m = a.merge(b)
    assert m.count == one.count and m.min == one.min and m.max == one.max and m.zero_count == one.zero_count
    assert m.mean == pytest.approx(one.mean, rel=1e-12) and m.std == pytest.approx(one.std, rel=1e-12)
    np.testing.assert_array_equal(m.edges, one.edges)
    np.testing.assert_array_equal(m.counts, one.counts)
    # inputs unchanged, streaming in many batches gives the same grid and counts too
    assert a.count == 30_000 and b.count == 70_100
    s = Histogram()
    for part in np.array_split(x, 37):
        s.update(part)
    np.testing.assert_array_equal(s.counts, one.counts)
    np.testing.assert_array_equal(s.edges, one.edges)


def test_merge_with_different_ranges_and_empty():
    a = Histogram().update(RNG.normal(size=10_000) * 1e-3)
    b = Histogram().update(RNG.normal(1e4, 1, size=10_000))
    m = a.merge(b)
    assert m.counts.sum() == 20_000 and m.min == min(a.min, b.min) and m.max == max(a.max, b.max)
    assert m.bin_width >= max(a.bin_width, b.bin_width)
    empty = Histogram()
    e = empty.merge(a)
    np.testing.assert_array_equal(e.counts, a.counts)
    assert e.count == a.count and a.merge(empty).mean == a.mean
    with pytest.raises(WorkbenchError):
        a.merge(Histogram(4096))


def test_growth_keeps_counts_and_memory_constant():
    h = Histogram()
    total = 0
    for i in range(1000):
        x = RNG.normal(size=50) * (1.02 ** i) + (i % 7) * 0.1
        h.update(x)
        total += x.size
        assert h.counts.size == h.bins
    assert h.count == total and h.counts.sum() == total
    assert len(json.dumps(h.to_dict())) < 40_000


def test_percentile_close_to_numpy():
    for x in (RNG.normal(size=200_000), RNG.laplace(size=200_000), np.maximum(RNG.normal(size=200_000), 0),
              RNG.uniform(-5, -1, size=200_000)):
        h = Histogram().update(x.astype(np.float32))
        ps = np.array([0.0, 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 100])
        np.testing.assert_allclose(h.percentile(ps), np.percentile(x.astype(np.float32), ps),
                                   atol=2 * h.bin_width, rtol=0)
        assert h.percentile(0) == h.min and h.percentile(100) == h.max
    with pytest.raises(WorkbenchError):
        h.percentile(101)


def test_nan_inf_counted_separately():
    x = np.array([1.0, np.nan, np.inf, -np.inf, 2.0, np.nan, 0.0], np.float32)
    h = Histogram().update(x)
    assert (h.count, h.nan_count, h.inf_count, h.zero_count) == (3, 2, 2, 1)
    assert (h.min, h.max, h.mean) == (0.0, 2.0, 1.0)
    h.update(np.array([np.nan]))
    assert h.count == 3 and h.nan_count == 3


def test_attention_mask_outliers_keep_resolution():
    bulk = RNG.normal(size=100_000).astype(np.float32)
    x = bulk.copy()
    x[::4] = np.float32(-1e38)
    x[1] = np.finfo(np.float32).min
    h = Histogram().update(x)
    xd = x.astype(np.float64)
    assert h.min == xd.min() and h.max == xd.max() and h.count == x.size
    assert h.mean == pytest.approx(xd.mean(), rel=1e-9) and h.std == pytest.approx(xd.std(), rel=1e-9)
    assert h.outlier_counts == (25_001, 0) and h.counts.sum() == x.size - 25_001
    assert h.bin_width < 0.01  # the bulk keeps its resolution
    assert math.isfinite(h.percentile(60)) and abs(h.percentile(60) - np.percentile(xd, 60)) < 0.01
    assert h.percentile(10) == pytest.approx(-1e38, rel=1e-4)  # the tail's mean
    a, _, c = h.pieces()
    assert np.all(np.isfinite(a)) and c.sum() == x.size
    # with the outlier handling switched off everything is binned, still without overflow
    h2 = Histogram(outlier_abs=math.inf).update(x)
    assert h2.counts.sum() == x.size and np.all(np.isfinite(h2.edges)) and h2.bin_width > 1e34


def test_pieces_and_abs_fold():
    x = np.r_[RNG.normal(size=20_000), np.zeros(5000)].astype(np.float32)
    h = Histogram().update(x)
    a, b, c = h.pieces()
    assert c.sum() == x.size and np.all(b >= a) and np.all(np.diff(a) >= 0)
    assert a[0] == h.min and b[-1] == h.max
    assert c[(a == 0) & (b == 0)].sum() == 5000
    fa, fb, fc = h.pieces(absolute=True)
    assert fc.sum() == x.size and fa.min() == 0 and fb.max() == max(-h.min, h.max)
    ax = np.abs(x)
    for t in (0.1, 0.5, 1.3, 2.2):  # folding is exact at bin edges
        t = np.floor(t / h.bin_width) * h.bin_width
        assert fc[fb <= t].sum() == np.count_nonzero(ax < t)
    ca, _, cc = h.pieces(coarsen=2)
    assert cc.sum() == x.size and ca.size < a.size


def test_round_trip_and_inputs():
    h = Histogram(4096).update(RNG.normal(size=1000).astype(np.float16))
    h.update(np.array([np.nan, -1e38]))
    d = json.loads(json.dumps(h.to_dict()))
    g = Histogram.from_dict(d)
    assert g.to_dict() == h.to_dict()
    np.testing.assert_array_equal(g.counts, h.counts)
    assert (g.count, g.min, g.max, g.std, g.nan_count, g.outlier_counts) == (
        h.count, h.min, h.max, h.std, h.nan_count, h.outlier_counts)
    with pytest.raises(WorkbenchError):
        Histogram.from_dict({"bins": 16})
    bad = dict(d, counts=[1] * 5)
    with pytest.raises(WorkbenchError):
        Histogram.from_dict(bad)


def test_empty_and_constant():
    h = Histogram()
    assert h.count == 0 and math.isnan(h.min) and math.isnan(h.mean)
    h.update(np.array([], np.float32))
    assert h.count == 0
    h.update(np.full(10, 3.5, np.float32))
    assert (h.min, h.max, h.std, h.count) == (3.5, 3.5, 0.0, 10)
    assert h.percentile(50) == 3.5
    h.update(np.zeros(10))
    assert h.zero_fraction == 0.5 and h.counts.sum() == 20
    with pytest.raises(WorkbenchError):
        Histogram(bins=3)
