"""Per-sample errors and the paired-bootstrap interval of an SQNR margin."""

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.numerics import ErrorAccumulator, margin_interval, sample_err2


def test_sample_err2_sums_to_the_pooled_error():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 3, 4)).astype(np.float32)
    a = ref + rng.normal(scale=0.1, size=ref.shape).astype(np.float32)
    e = sample_err2(ref, a)
    assert e.shape == (6,)
    pooled = 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / e.sum())
    assert abs(pooled - ErrorAccumulator().update(ref, a).sqnr_db) < 1e-6


def test_margin_interval_is_a_paired_bootstrap():
    rng = np.random.default_rng(1)
    a = rng.gamma(0.5, size=200)  # heavy-tailed per-sample errors, as on the segmenter
    # b = a scaled: every resample gives exactly 10·log10(2), so the interval has no width
    lo, hi = margin_interval(a, 2 * a)
    assert abs(lo - 10 * np.log10(2)) < 1e-9 and abs(hi - 10 * np.log10(2)) < 1e-9
    # independent errors: the interval holds the full-set margin and matches a plain bootstrap loop
    b = rng.gamma(0.5, size=200)
    lo, hi = margin_interval(a, b, reps=4000, seed=3)
    draws = np.random.default_rng(7).integers(0, 200, (4000, 200))
    loop = [10 * np.log10(b[d].sum() / a[d].sum()) for d in draws]
    want = np.quantile(loop, [0.05, 0.95])
    assert lo < 10 * np.log10(b.sum() / a.sum()) < hi and hi - lo > 0.5
    assert abs(lo - want[0]) < 0.15 and abs(hi - want[1]) < 0.15


def test_margin_interval_names_mismatched_vectors():
    with pytest.raises(WorkbenchError, match="one length"):
        margin_interval(np.ones(3), np.ones(4))
