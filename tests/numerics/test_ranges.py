from collections import Counter

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.numerics import (
    Histogram,
    array_clip_range,
    candidate_ranges,
    clip_range,
    compute_qparams,
    expected_error,
    fake_quantize,
)
from workbench.recipe import Auto, ClipRange, Entropy, MinMax, Mse, Percentile

_R = np.random.default_rng(7)
LAPLACE = _R.laplace(size=200_000).astype(np.float32)
HEAVY = _R.standard_t(2.5, size=200_000).astype(np.float32)
H_LAPLACE = Histogram().update(LAPLACE)
H_HEAVY = Histogram().update(HEAVY)
SIGNED = [(True, True), (False, False), (False, True)]  # (symmetric, signed)


def measured_mse(x, lo, hi, bits=8, symmetric=True, signed=True):
    qp = compute_qparams(lo, hi, bits=bits, signed=signed, symmetric=symmetric)
    return float(np.mean((fake_quantize(x, qp).astype(np.float64) - x) ** 2))


def test_minmax_and_cliprange():
    mm = clip_range(H_LAPLACE, MinMax(), bits=8, symmetric=True, signed=True)
    assert mm == (LAPLACE.min(), LAPLACE.max())
    assert clip_range(H_LAPLACE, ClipRange(-1.5, 2.0), bits=4, symmetric=False, signed=False) == (-1.5, 2.0)


@pytest.mark.parametrize(("symmetric", "signed"), SIGNED)
def test_percentile(symmetric, signed):
    lo, hi = clip_range(H_LAPLACE, Percentile(99.9), bits=8, symmetric=symmetric, signed=signed)
    assert LAPLACE.min() < lo < 0 < hi < LAPLACE.max()
    w = 2 * H_LAPLACE.bin_width
    if symmetric:
        assert lo == -hi and hi == pytest.approx(np.percentile(np.abs(LAPLACE), 99.9), abs=w)
    else:  # each tail loses 0.05 %
        assert lo == pytest.approx(np.percentile(LAPLACE, 0.05), abs=w)
        assert hi == pytest.approx(np.percentile(LAPLACE, 99.95), abs=w)
    assert clip_range(H_LAPLACE, Percentile(100), bits=8, symmetric=False, signed=signed) == (
        LAPLACE.min(), LAPLACE.max())


def _kl_reference(bins, nq):
    """pytorch-quantization's _compute_amax_entropy loop (TensorRT legacy), for one histogram."""
    bins = np.asarray(bins, float)
    divergences = []
    for i in range(nq, len(bins) + 1):
        space = np.linspace(0, i, num=nq + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        dens = np.zeros(nq)
        for idx, d in enumerate(digitized):
            if d != -1:
                dens[d] += bins[idx]
        for key, val in Counter(digitized).items():
            if key != -1:
                dens[key] /= val
        q = np.array([dens[d] if d != -1 else 0.0 for d in digitized])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        m = p > 0
        kl = np.sum(p[m] * np.log(p[m] / q[m])) if np.all(q[m] > 0) else np.inf
        divergences.append(kl)
    d = np.array(divergences)
    return nq + len(d) - 1 - int(np.argmin(d[::-1]))


def test_entropy_matches_tensorrt_reference():
    h = Histogram(512).update(LAPLACE)
    # |x| histogram on bins [j·w, (j+1)·w), built here from the public counts/edges, zeros removed
    k = np.rint(h.edges[:-1] / h.bin_width).astype(int)
    j = np.where(k < 0, -k - 1, k)
    folded = np.bincount(j, weights=h.counts, minlength=j.max() + 1)
    folded[0] -= h.zero_count
    folded = folded[: np.flatnonzero(folded)[-1] + 1]
    for bits in (8, 4):
        nq = 1 << (bits - 1)
        i = _kl_reference(folded, nq)
        lo, hi = clip_range(h, Entropy(), bits=bits, symmetric=True, signed=True)
        assert hi == -lo == pytest.approx(min(i * h.bin_width, max(-h.min, h.max)))


@pytest.mark.parametrize(("symmetric", "signed"), SIGNED)
def test_entropy_is_sensible_on_laplacian(symmetric, signed):
    lo, hi = clip_range(H_LAPLACE, Entropy(), bits=8, symmetric=symmetric, signed=signed)
    assert (lo, hi) != (LAPLACE.min(), LAPLACE.max())
    p99 = np.percentile(np.abs(LAPLACE), 99)
    if symmetric:
        assert lo == -hi and p99 < hi < 0.95 * np.abs(LAPLACE).max()
    else:
        assert p99 < hi < 0.95 * LAPLACE.max() and p99 < -lo < 0.95 * -LAPLACE.min()


def test_entropy_post_relu_and_degenerate_cases():
    relu = np.maximum(LAPLACE, 0)
    h = Histogram().update(relu)
    lo, hi = clip_range(h, Entropy(), bits=8, symmetric=False, signed=False)
    assert lo == 0 and 0 < hi <= relu.max()
    # 16 bits: more levels than bins, falls back to min-max
    assert clip_range(h, Entropy(), bits=16, symmetric=False, signed=False) == (0.0, relu.max())


@pytest.mark.parametrize(("symmetric", "signed"), SIGNED)
@pytest.mark.parametrize("bits", [8, 4])
def test_mse_beats_minmax_on_heavy_tails(symmetric, signed, bits):
    lo, hi = clip_range(H_HEAVY, Mse(), bits=bits, symmetric=symmetric, signed=signed)
    mm = (float(HEAVY.min()), float(HEAVY.max()))
    amax = max(-mm[0], mm[1])
    assert (hi < amax and lo == -hi) if symmetric else (hi < mm[1] and lo > mm[0])
    ours = measured_mse(HEAVY, lo, hi, bits, symmetric, signed)
    assert ours < 0.8 * measured_mse(HEAVY, *mm, bits, symmetric, signed)
    # close to the best of a brute-force scan of symmetric/scaled thresholds
    fracs = np.geomspace(1e-3, 1, 120)
    scan = [measured_mse(HEAVY, mm[0] * f, mm[1] * f, bits, symmetric, signed) for f in fracs]
    assert ours <= 1.03 * min(scan)


@pytest.mark.parametrize(("symmetric", "signed"), SIGNED)
def test_auto_predicts_no_more_error_than_any_rule(symmetric, signed):
    for h in (H_LAPLACE, H_HEAVY):
        kw = dict(bits=8, symmetric=symmetric, signed=signed)
        auto = clip_range(h, Auto(), **kw)
        err = expected_error(h, compute_qparams(*auto, **kw)).mse
        cands = candidate_ranges(h, **kw)
        assert set(cands) == {"minmax", "percentile", "entropy", "mse"}
        for rule in (MinMax(), Percentile(), Entropy(), Mse()):
            other = expected_error(h, compute_qparams(*clip_range(h, rule, **kw), **kw)).mse
            assert err <= other
        assert cands["mse"][1].mse <= cands["minmax"][1].mse


def test_attention_mask_data():
    x = LAPLACE.copy()
    x[::3] = np.float32(-1e38)
    h = Histogram().update(x)
    assert clip_range(h, MinMax(), bits=8, symmetric=False, signed=False)[0] == np.float32(-1e38)
    lo, hi = clip_range(h, Percentile(99.9), bits=8, symmetric=False, signed=False)
    assert lo == pytest.approx(-1e38, rel=1e-6) and 5 < hi < LAPLACE.max()
    for rule in (Entropy(), Mse(), Auto()):
        lo, hi = clip_range(h, rule, bits=8, symmetric=False, signed=False)
        assert np.isfinite([lo, hi]).all() and lo < hi


def test_errors():
    with pytest.raises(WorkbenchError):
        clip_range(Histogram(), MinMax(), bits=8, symmetric=True, signed=True)
    with pytest.raises(WorkbenchError):
        clip_range(H_LAPLACE, MinMax(), bits=3, symmetric=True, signed=True)
    with pytest.raises(WorkbenchError):
        array_clip_range(np.array([1.0, np.nan]), MinMax(), bits=8, symmetric=True, signed=True)


# -- weights ----------------------------------------------------------------------------------
W = _R.normal(size=(16, 8, 3, 3)).astype(np.float32) * np.geomspace(0.01, 1, 16)[:, None, None, None]


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_array_minmax_and_percentile_exact(axis):
    kw = dict(bits=8, symmetric=True, signed=True, axis=axis)
    lo, hi = array_clip_range(W, MinMax(), **kw)
    other = tuple(i for i in range(W.ndim) if axis is None or i != axis % W.ndim)
    np.testing.assert_array_equal(lo, W.min(axis=other))
    np.testing.assert_array_equal(hi, W.max(axis=other))
    assert lo.shape == (() if axis is None else (W.shape[axis],))
    lo, hi = array_clip_range(W, Percentile(99), **kw)
    np.testing.assert_allclose(hi, np.quantile(np.abs(W), 0.99, axis=other), rtol=1e-12)
    np.testing.assert_array_equal(lo, -hi)
    lo, hi = array_clip_range(W, Percentile(99), **(kw | dict(symmetric=False)))
    np.testing.assert_allclose(lo, np.quantile(W, 0.005, axis=other), rtol=1e-12)
    lo, hi = array_clip_range(W, ClipRange(-1, 2), **kw)
    assert np.all(lo == -1) and np.all(hi == 2) and lo.shape == (() if axis is None else (W.shape[axis],))


@pytest.mark.parametrize("rule", [Entropy(), Mse(), Auto()])
def test_array_histogram_rules_per_channel(rule):
    lo, hi = array_clip_range(W, rule, bits=4, symmetric=True, signed=True, axis=0)
    assert lo.shape == hi.shape == (16,)
    amax = np.abs(W).reshape(16, -1).max(axis=1)
    assert np.all(hi > 0) and np.all(hi <= amax * (1 + 1e-6)) and np.all(lo >= -amax * (1 + 1e-6))
    # ranges follow the channels' scales
    assert np.all(np.diff(hi) > 0) or rule == Entropy()
    plo, phi = array_clip_range(W, rule, bits=4, symmetric=True, signed=True)
    assert plo.shape == () and phi > 0


DEGENERATE = {
    "zeros": np.zeros(100),
    "constant": np.full(50, -2.5),
    "single": np.array([3.0]),
    "two_values": np.array([1.0, -1.0]),
    "all_negative": -np.abs(_R.normal(size=1000)),
    "far_from_zero": _R.normal(1000, 0.1, size=1000),
    "only_mask_values": np.full(10, -1e38),
    "huge": _R.normal(size=1000) * 1e29,
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_every_rule_handles_degenerate_data(name):
    h = Histogram().update(DEGENERATE[name])
    for bits in (4, 8, 16):
        for symmetric, signed in (*SIGNED, (True, False)):
            kw = dict(bits=bits, symmetric=symmetric, signed=signed)
            for rule in (MinMax(), Percentile(), Entropy(), Mse(), Auto()):
                lo, hi = clip_range(h, rule, **kw)
                assert np.isfinite([lo, hi]).all() and lo <= hi
                assert min(h.min, 0.0) <= lo or symmetric
                assert hi <= max(h.max, 0.0) or symmetric
                assert np.isfinite(expected_error(h, compute_qparams(lo, hi, **kw)).mse)
