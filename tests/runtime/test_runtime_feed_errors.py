"""Every bad dataset gives a one-line WorkbenchError saying what the model expects."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.models.tensors import TensorInfo
from workbench.runtime import Feeds

F32 = np.dtype(np.float32)
IMAGE = [TensorInfo("x", ("N", 3, 32, 32), F32)]
MNIST = [TensorInfo("x", ("N", 1, 28, 28), F32)]
TWO = [TensorInfo("a", ("N", 4), F32), TensorInfo("k", ("N", 4), np.dtype(np.int64))]


def _error(data, inputs, **kw) -> str:
    with pytest.raises(WorkbenchError) as info:
        list(Feeds(data, inputs, **kw))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_input():
    assert _error({}, IMAGE) == "input 'x' is missing; the model takes: x float32 [N,3,32,32]"
    msg = _error({"a": np.zeros((2, 4), np.float32)}, TWO)
    assert msg == "input 'k' is missing; the model takes: a float32 [N,4], k int64 [N,4]"


def test_unknown_key():
    msg = _error({"x": np.zeros((1, 3, 32, 32), np.float32), "label": np.zeros(1)}, IMAGE)
    assert msg.startswith("unknown input 'label'; the model takes: x float32 [N,3,32,32]")


def test_wrong_rank():
    msg = _error({"x": np.zeros((64, 28, 28), np.float32)}, MNIST)
    assert msg.startswith("input 'x': expected [N,1,28,28], got [64,28,28]")
    assert "arr[None]" in msg
    in_a_list = _error([np.zeros((64, 28, 28), np.float32)], MNIST)  # one rank short: a sample, wrong dims
    assert in_a_list == "input 'x': expected [N,1,28,28], got [64,28,28]"


def test_wrong_static_dim():
    msg = _error(np.zeros((8, 32, 32, 3), np.float32), IMAGE)
    assert msg == "input 'x': expected [N,3,32,32], got [8,32,32,3]"


def test_wrong_dtype():
    msg = _error({"a": np.zeros((2, 4), np.float32), "k": np.zeros((2, 4), np.float32)}, TWO)
    assert msg == "input 'k': expected dtype int64, got float32; convert with .astype(np.int64)"
    assert "expected dtype float32, got int64" in _error(np.zeros((2, 3, 32, 32), np.int64), IMAGE)


def test_empty_datasets():
    assert "holds no samples" in _error(np.zeros((0, 3, 32, 32), np.float32), IMAGE)
    assert "holds no samples" in _error([], IMAGE)
    assert "holds no samples" in _error(iter([]), IMAGE)


def test_different_sample_counts():
    msg = _error({"a": np.zeros((3, 4), np.float32), "k": np.zeros((2, 4), np.int64)}, TWO)
    assert msg.startswith("inputs have different sample counts: a has 3, k has 2")
    msg = _error([{"a": np.zeros((3, 4), np.float32), "k": np.zeros((2, 4), np.int64)}], TWO)
    assert msg == "inputs have different sample counts in one batch: a has 3, k has 2"


def test_one_shot_generator_iterated_twice():
    feeds = Feeds((np.zeros((2, 3, 32, 32), np.float32) for _ in range(2)), IMAGE)
    assert len(list(feeds)) == 1
    with pytest.raises(WorkbenchError, match=r"one-shot iterator .* consumed; pass a list, or a callable"):
        iter(feeds)


def test_npz_missing_or_not_npz(tmp_path):
    assert _error(tmp_path / "nope.npz", IMAGE) == f"data file not found: {tmp_path / 'nope.npz'}"
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    msg = _error(bad, IMAGE)
    assert msg.startswith(f"{bad} is not a .npz file") and "np.savez" in msg


def test_npz_with_wrong_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, image=np.zeros((2, 3, 32, 32), np.float32))
    want = f"input 'x' is missing in {path} (found 'image'); the model takes: x float32 [N,3,32,32]"
    assert _error(path, IMAGE) == want


def test_one_array_for_a_two_input_model():
    msg = _error(np.zeros((2, 4), np.float32), TWO)
    assert msg.startswith("the array is one array but the model takes 2 inputs")
    assert "pass a dict input name → array" in msg


def test_tuple_too_short_and_unsupported_items():
    assert "batch 0 is a tuple of 1 item(s) but the model takes 2 inputs" in _error(
        [(np.zeros((2, 4), np.float32),)], TWO)
    assert "batch 0 is a str" in _error(["abc"], IMAGE)
    assert "cannot feed a int to the model" in _error(3, IMAGE)


def test_fixed_batch_remainder():
    fixed = [TensorInfo("x", (4, 2), F32)]
    msg = _error(np.zeros((10, 2), np.float32), fixed)
    assert msg.startswith("10 samples do not fill batches of 4, the model's fixed batch size")
    assert "limit=8" in msg
    chunks = [np.zeros((5, 2), np.float32), np.zeros((5, 2), np.float32)]
    assert _error(chunks, fixed).startswith("10 samples do not fill batches of 4")


def test_callable_returning_non_iterable():
    assert "the data callable returned a int" in _error(lambda: 3, IMAGE)
