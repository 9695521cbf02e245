"""Feeds: sources, batching along axis 0, limit, dtype casting, npz round trips."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.models.tensors import TensorInfo
from workbench.runtime import Feeds, Runner, as_feeds, run_batches
from workbench.runtime.npz import DeflatedArray, open_arrays

F32 = np.dtype(np.float32)


def _info(*shape, name="x", dtype=F32):
    return [TensorInfo(name, tuple(shape), np.dtype(dtype))]


def _stack(feeds, name="x"):
    return np.concatenate([b[name] for b in feeds])


def test_dict_source_batches_dynamic_models_by_batch_size():
    x = np.arange(70 * 4, dtype=np.float32).reshape(70, 4)
    feeds = Feeds({"x": x}, _info("N", 4), batch_size=32)
    assert (feeds.num_samples, feeds.num_batches, feeds.batch_size) == (70, 3, 32)
    assert [b["x"].shape[0] for b in feeds] == [32, 32, 6]
    np.testing.assert_array_equal(_stack(feeds), x)
    np.testing.assert_array_equal(_stack(feeds), x)  # re-iterable


def test_fixed_batch_1_yields_single_samples():
    x = np.random.default_rng(0).random((5, 3, 8, 8), dtype=np.float32)
    feeds = Feeds(x, _info(1, 3, 8, 8), batch_size=32)
    batches = list(feeds)
    assert feeds.batch_size == 1 and feeds.num_batches == 5
    assert [b["x"].shape for b in batches] == [(1, 3, 8, 8)] * 5
    np.testing.assert_array_equal(_stack(batches), x)


def test_fixed_batch_4_splits_and_joins_chunks():
    chunks = [{"x": np.full((3, 2), i, np.float32)} for i in range(4)]  # 12 samples in chunks of 3
    batches = list(Feeds(chunks, _info(4, 2)))
    assert [b["x"].shape for b in batches] == [(4, 2)] * 3
    np.testing.assert_array_equal(batches[1]["x"][:, 0], [1, 1, 2, 2])


def test_limit_caps_samples_and_stops_pulling():
    pulled = []

    def gen():
        for i in range(100):
            pulled.append(i)
            yield {"x": np.full((4, 2), i, np.float32)}

    feeds = Feeds(gen(), _info("N", 2), batch_size=3, limit=10)
    assert feeds.num_batches is None
    assert [b["x"].shape[0] for b in feeds] == [3, 3, 3, 1]
    assert pulled == [0, 1, 2]
    arrays = Feeds({"x": np.zeros((50, 2), np.float32)}, _info("N", 2), batch_size=8, limit=20)
    assert (arrays.num_samples, arrays.num_batches) == (20, 3)
    assert [b["x"].shape[0] for b in arrays] == [8, 8, 4]


def test_float64_is_cast_to_float32():
    feeds = Feeds(np.zeros((3, 2)), _info("N", 2))
    (batch,) = list(feeds)
    assert batch["x"].dtype == np.float32


def test_single_samples_from_an_iterable_get_a_batch_axis_and_are_grouped():
    samples = [{"x": np.full((1, 28, 28), i, np.float32)} for i in range(10)]
    feeds = Feeds(samples, _info("N", 1, 28, 28), batch_size=4)
    assert feeds.num_samples == 10
    batches = list(feeds)
    assert [b["x"].shape for b in batches] == [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)]
    np.testing.assert_array_equal(_stack(batches)[:, 0, 0, 0], np.arange(10))


def test_tuples_take_inputs_in_order_and_ignore_labels():
    inputs = [TensorInfo("a", ("N", 2), F32), TensorInfo("k", ("N", 2), np.dtype(np.int64))]
    data = [(np.ones((2, 2), np.float32), np.full((2, 2), 3), np.array([0, 1])) for _ in range(3)]
    batches = list(Feeds(data, inputs, batch_size=6))
    assert len(batches) == 1 and batches[0]["k"].dtype == np.int64
    assert batches[0]["a"].shape == (6, 2) and set(batches[0]) == {"a", "k"}


def test_callable_source_is_reiterable():
    def make():
        return (np.full((2, 2), i, np.float32) for i in range(3))

    feeds = Feeds(make, _info("N", 2), batch_size=2)
    assert len(list(feeds)) == 3 and len(list(feeds)) == 3


def test_npz_round_trip_stored_and_compressed(mk, tmp_path):
    model = mk.load(mk.conv_model())
    x = mk.f32(10, 3, 8, 8)
    np.savez(tmp_path / "plain.npz", x=x)
    np.savez_compressed(tmp_path / "packed.npz", x=x)
    assert isinstance(open_arrays(tmp_path / "plain.npz")["x"], np.memmap)
    assert isinstance(open_arrays(tmp_path / "packed.npz")["x"], DeflatedArray)
    runner = Runner(model.proto)
    want = runner.run({"x": x})["y"]
    for name in ("plain.npz", "packed.npz"):
        feeds = as_feeds(tmp_path / name, model, batch_size=4)
        assert feeds.num_batches == 3
        for _ in range(2):
            got = np.concatenate([o["y"] for o in run_batches(runner, feeds, progress=False)])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_npy_file_for_a_one_input_model(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_array_equal(_stack(Feeds(tmp_path / "x.npy", _info("N", 2), batch_size=4)), x)


def test_multi_input_npz(mk, tmp_path):
    model = mk.load(mk.two_input_model())
    a, k = mk.f32(5, 4), np.arange(20).reshape(5, 4)
    np.savez(tmp_path / "d.npz", a=a, k=k)
    out = [Runner(model.proto).run(b)["y"] for b in as_feeds(str(tmp_path / "d.npz"), model, batch_size=2)]
    np.testing.assert_allclose(np.concatenate(out), a * k, rtol=1e-6)


def test_as_feeds_passes_feeds_through(mk):
    model = mk.load(mk.conv_model())
    feeds = as_feeds(mk.f32(2, 3, 8, 8), model)
    assert as_feeds(feeds, model, batch_size=1) is feeds
    assert feeds.num_samples == 2


def test_fixed_batch_with_count_that_fits_via_limit():
    feeds = Feeds(np.zeros((10, 2), np.float32), _info(4, 2), limit=8)
    assert [b["x"].shape[0] for b in feeds] == [4, 4]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size_and_limit(bad):
    with pytest.raises(WorkbenchError, match="batch_size must be a positive integer"):
        Feeds(np.zeros((2, 2), np.float32), _info("N", 2), batch_size=bad)
    with pytest.raises(WorkbenchError, match="limit must be a positive integer"):
        Feeds(np.zeros((2, 2), np.float32), _info("N", 2), limit=bad)
