"""Element-sampled calibration: a fixed prime stride cut inside the graph, checked against the
whole tensors onnxruntime computes (exact slices on one sample, estimates over many)."""

import numpy as np
import pytest

from tests.builders import conv_net, conv_net_data
from workbench.calibration import Calibration, ChannelStats, sampling
from workbench.calibration.sampling import channel_of_sample, keeps_range, stride_for
from workbench.numerics import Histogram
from workbench.runtime import Runner
from workbench.session import Session


@pytest.mark.parametrize("n, m", [(2048, 256), (6272, 1024), (48 * 320 * 16, 4096), (3 * 5 * 7 * 11 * 13, 10)])
def test_stride_is_a_prime_that_divides_no_dimension(n, m):
    k = stride_for(n, m)
    assert k >= n / m and n % k != 0
    assert all(k % p for p in range(2, int(k ** 0.5) + 1))


def test_small_tensors_and_no_sampling_stay_exact():
    assert stride_for(1000, 1024) == 1
    assert stride_for(2047, 1024) == 1
    assert stride_for(10**6, None) == 1


def test_stride_seven_on_seven_by_seven_maps_is_avoided():
    # 128 channels of 7x7: a stride of 7 would only ever see column 0 of each map
    k = stride_for(128 * 49, 1024)
    cols = (np.arange(0, 128 * 49, k) % 7)
    assert set(cols.tolist()) == set(range(7))


def test_channel_of_sample_matches_unravel_index():
    shape, k = (2, 5, 3, 4), 7
    flat = np.arange(np.prod(shape))[::k]
    for axis in range(4):
        expect = np.unravel_index(flat, shape)[axis]
        np.testing.assert_array_equal(channel_of_sample(shape, axis, k, flat.size), expect)


@pytest.fixture
def any_range(monkeypatch):
    """Keep every stride, however much of the probe's range it misses (random data has no tails)."""
    monkeypatch.setattr(sampling, "RANGE_TOLERANCE", 1.0)


def test_a_slice_that_misses_a_rare_extreme_is_refused():
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    assert keeps_range(x, 7, tolerance=0.5) and not keeps_range(x, 7, tolerance=0.0)
    x[5] = 100.0  # an outlier the stride-7 slice (positions 0, 7, 14, …) never sees
    assert not keeps_range(x, 7, tolerance=0.5)
    assert keeps_range(x, 1, tolerance=0.0)


def test_tensors_whose_slice_misses_the_probe_range_stay_exact():
    s = Session(conv_net(), progress=False)
    data = conv_net_data(4)
    exact = s.calibrate(data)
    assert any(stride_for(h.count // 4, 256) > 1 for h in exact.histograms.values())  # candidates exist
    loose = s.calibrate(data, values_per_sample=256)  # but a 1-in-k slice of these maps misses > 10 %
    assert not any(k > 1 for k in loose.strides.values())
    for t, h in loose.histograms.items():
        assert (h.min, h.max, h.count) == (exact.histograms[t].min, exact.histograms[t].max, exact.histograms[t].count)


def _full(s: Session, data: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    return Runner(s.prepared, outputs=tensors, optimize=True).run({"x": data})  # as calibration runs it


def test_one_sample_is_sliced_exactly_as_the_stride_says(any_range):
    s = Session(conv_net(), progress=False)
    data = conv_net_data(1)
    cal = s.calibrate(data, values_per_sample=256)
    tensors = list(cal.histograms)
    full = _full(s, data, tensors)
    sampled = [t for t in tensors if cal.strides.get(t, 1) > 1]
    assert sampled, "conv_net's 8x16x16 maps must be sampled at 256 values per sample"
    for t in tensors:
        k = cal.strides.get(t, 1)
        expect = Histogram().update(full[t].reshape(-1)[::k])
        np.testing.assert_array_equal(cal.histograms[t].counts, expect.counts)
        assert (cal.histograms[t].min, cal.histograms[t].max) == (expect.min, expect.max)
    for t, m in cal.means.items():
        k = cal.strides.get(t, 1)
        oracle = ChannelStats(m.axis)
        oracle.update(full[t])
        if k == 1:
            np.testing.assert_allclose(m.mean, oracle.mean, rtol=1e-6, atol=1e-7)
        else:
            x = np.moveaxis(full[t], m.axis, 0).reshape(full[t].shape[m.axis], -1)  # channel-major copy
            picks = np.unravel_index(np.arange(0, full[t].size, k), full[t].shape)
            per_channel = [full[t][picks][picks[m.axis] == c] for c in range(x.shape[0])]
            np.testing.assert_allclose(m.mean, [v.mean() for v in per_channel], rtol=1e-5, atol=1e-6)


def test_many_samples_estimate_the_exact_statistics(any_range):
    s = Session(conv_net(), progress=False)
    data = conv_net_data(96)
    exact = s.calibrate(data, batch_size=32)
    sampled = s.calibrate(data, batch_size=32, values_per_sample=256)
    assert sampled.num_samples == exact.num_samples == 96
    for t, he in exact.histograms.items():
        hs, k = sampled.histograms[t], sampled.strides.get(t, 1)
        assert abs(hs.count - he.count / k) <= 4 * 96, t  # ≈ one value in k of each run
        spread = he.max - he.min
        assert abs(hs.mean - he.mean) < 0.02 * spread, t
        assert abs(hs.std - he.std) < 0.05 * he.std + 1e-6, t
        assert abs(hs.percentile(99) - he.percentile(99)) < 0.05 * spread, t
    for t, me in exact.means.items():  # ~2000 spatially correlated values per channel: within 0.1 std
        np.testing.assert_allclose(sampled.means[t].mean, me.mean, atol=0.1 * exact.histograms[t].std)


def test_sampled_calibration_round_trips_and_quantizes_as_well(any_range):
    s = Session(conv_net(), progress=False)
    data = conv_net_data(128)
    s.calibrate(data)
    exact_db = float(s.compare(data).outputs["sqnr_db"].iloc[0])
    cal = s.calibrate(data, values_per_sample=256)
    back = Calibration.from_dict(cal.to_dict())
    assert back.strides == {t: k for t, k in cal.strides.items() if k > 1} and back.strides
    for t, m in cal.means.items():
        np.testing.assert_array_equal(back.means[t].counts, m.counts)
    sampled_db = float(s.compare(data).outputs["sqnr_db"].iloc[0])
    assert sampled_db > exact_db - 1.0, (sampled_db, exact_db)
