import math

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.numerics import ErrorAccumulator, cosine, max_abs, mse, sqnr_db


def test_values():
    ref = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    test = np.array([1.1, -2.0, 2.5, 0.5], np.float32)
    r, t = ref.astype(np.float64), test.astype(np.float64)
    d = r - t
    assert mse(ref, test) == pytest.approx(np.mean(d * d), rel=1e-15)
    assert sqnr_db(ref, test) == pytest.approx(10 * np.log10(np.sum(r * r) / np.sum(d * d)), rel=1e-15)
    assert cosine(ref, test) == pytest.approx(r @ t / np.linalg.norm(r) / np.linalg.norm(t), rel=1e-15)
    assert max_abs(ref, test) == pytest.approx(0.5, rel=1e-6)


def test_edge_cases():
    x = np.array([1.0, 2.0])
    assert sqnr_db(x, x) == math.inf and mse(x, x) == 0 and cosine(x, x) == pytest.approx(1.0)
    z = np.zeros(2)
    assert sqnr_db(z, z) == math.inf and cosine(z, z) == 1.0
    assert sqnr_db(z, x) == -math.inf and cosine(z, x) == 0.0
    assert cosine(x, -x) == pytest.approx(-1.0)
    assert math.isnan(mse(np.zeros(0), np.zeros(0))) and max_abs(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(WorkbenchError):
        mse(np.zeros(3), np.zeros(4))


def test_accumulator_equals_one_shot_on_concatenation():
    rng = np.random.default_rng(0)
    refs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (10, 1000, 1, 333)]
    tests = [r + rng.normal(size=r.shape).astype(np.float32) * 0.01 for r in refs]
    acc = ErrorAccumulator()
    for r, t in zip(refs, tests, strict=True):
        acc.update(r, t)
    acc.update(np.zeros((0, 3)), np.zeros((0, 3)))
    res = acc.result()
    R, T = np.concatenate(refs), np.concatenate(tests)
    assert set(res) == {"sqnr_db", "mse", "cosine", "max_abs", "count"}
    assert res["count"] == R.size
    assert res["mse"] == pytest.approx(mse(R, T), rel=1e-12)
    assert res["sqnr_db"] == pytest.approx(sqnr_db(R, T), rel=1e-12)
    assert res["cosine"] == pytest.approx(cosine(R, T), rel=1e-12)
    assert res["max_abs"] == max_abs(R, T)
    assert 35 < res["sqnr_db"] < 45
