import math

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.numerics import Histogram, compute_qparams, expected_error, fake_quantize

N = 200_000
_R = np.random.default_rng(42)
DATA = {
    "gaussian": _R.normal(size=N),
    "laplacian": _R.laplace(size=N),
    "relu": np.maximum(_R.normal(size=N), 0),
    "relu6": np.clip(_R.normal(2, 3, size=N), 0, 6),
    "uniform": _R.uniform(-1, 3, size=N),
    "heavy_tailed": _R.standard_t(3, size=N),
}
HISTS = {k: Histogram().update(v.astype(np.float32)) for k, v in DATA.items()}


def measured(x: np.ndarray, qp) -> tuple[float, float]:
    x32 = x.astype(np.float32)
    err = fake_quantize(x32, qp).astype(np.float64) - x32
    lo, hi = qp.clip_range()
    return float(np.mean(err * err)), float(np.mean((x32 < lo) | (x32 > hi)))


@pytest.mark.parametrize("name", DATA)
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_measured_error(name, bits, symmetric):
    x, h = DATA[name], HISTS[name]
    for frac in (1.5, 1.0, 0.6, 0.25, 0.08):  # from clipping nothing to clipping a lot
        qp = compute_qparams(h.min * frac, h.max * frac, bits=bits, signed=symmetric, symmetric=symmetric)
        est = expected_error(h, qp)
        mse, clipped = measured(x, qp)
        assert est.mse == pytest.approx(mse, rel=0.03), (frac, est)
        assert est.clipped_fraction == pytest.approx(clipped, rel=0.03, abs=2e-4)
        assert est.mse == pytest.approx(est.clip_mse + est.round_mse, rel=1e-12)
        assert est.rmse_over_scale == pytest.approx(math.sqrt(est.mse) / float(qp.scale))
        assert est.sqnr_db == pytest.approx(10 * math.log10(np.mean(x.astype(np.float32) ** 2.0) / est.mse),
                                            abs=0.15)
        if frac > 1:
            assert est.clip_mse == 0 and est.clipped_fraction == 0


def test_unclipped_uniform_is_step_squared_over_twelve():
    h = HISTS["uniform"]
    est = expected_error(h, compute_qparams(h.min, h.max, bits=8, signed=False, symmetric=False))
    assert est.rmse_over_scale == pytest.approx(math.sqrt(1 / 12), rel=0.01)


def test_zoomed_in_bins_use_position_on_the_grid():
    """Bins far narrower than the step: everything rounds to 0, error is E[x²], not s²/12."""
    x = _R.uniform(0, 0.01, size=50_000).astype(np.float32)
    h = Histogram().update(x)
    qp = compute_qparams(-127, 127, bits=8, signed=True, symmetric=True)  # step 1
    est = expected_error(h, qp)
    assert est.mse == pytest.approx(measured(x, qp)[0], rel=0.01)
    assert est.mse == pytest.approx(0.01 ** 2 / 3, rel=0.02)
    shifted = Histogram().update(x + np.float32(0.5))  # now centred on a rounding boundary
    assert expected_error(shifted, qp).mse == pytest.approx(measured(x + np.float32(0.5), qp)[0], rel=0.01)


def test_point_masses_are_exact():
    qp = compute_qparams(-1, 1, bits=4, signed=True, symmetric=True)
    const = np.full(1000, 0.3, np.float32)
    est = expected_error(Histogram().update(const), qp)
    assert est.mse == pytest.approx(measured(const, qp)[0], rel=1e-6)
    # exact zeros (half of a post-ReLU tensor) cost nothing; the rest is modelled as usual
    x = np.r_[np.zeros(100_000), np.abs(_R.normal(size=100_000)) * 0.05].astype(np.float32)
    assert expected_error(Histogram().update(x), qp).mse == pytest.approx(measured(x, qp)[0], rel=0.01)


def test_attention_mask_tail():
    x = DATA["gaussian"].astype(np.float32).copy()
    x[::5] = np.float32(-1e38)
    h = Histogram().update(x)
    for lo, hi in ((-4.0, 4.0), (float(x.min()), 4.0)):
        qp = compute_qparams(lo, hi, bits=8, signed=False, symmetric=False)
        est = expected_error(h, qp)
        assert all(math.isfinite(v) for v in (est.mse, est.clip_mse, est.round_mse))
        assert est.mse == pytest.approx(measured(x, qp)[0], rel=0.03)


def test_errors():
    qp = compute_qparams(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), bits=8, signed=True, symmetric=True,
                         axis=0)
    with pytest.raises(WorkbenchError):
        expected_error(HISTS["gaussian"], qp)
    with pytest.raises(WorkbenchError):
        expected_error(Histogram(), compute_qparams(-1, 1, bits=8, signed=True, symmetric=True))
    # exact grid: zero error and infinite SQNR
    h = Histogram().update(np.array([0.0, 1.0, 0.0, 1.0], np.float32))  # exact zeros and exact max
    est = expected_error(h, compute_qparams(-127, 127, bits=8, signed=True, symmetric=True))
    assert est.mse == 0 and est.sqnr_db == math.inf
