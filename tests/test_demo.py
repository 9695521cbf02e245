"""The bundled demo: W8A8 within 1 point of float, all-int16 within 0.1, and the problem it is
there to teach (per-tensor int8 weights on depthwise convs) is real."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from workbench.recipe import PerTensor, Precision
from workbench.session import Session

DEMO = Path(__file__).parent.parent / "assets" / "demo"


@pytest.fixture(scope="module")
def demo():
    labels = np.load(DEMO / "eval_labels.npy")
    s = Session(DEMO / "mnist_dsconv.onnx", progress=False)
    s.calibrate(DEMO / "calib.npz")
    return s, lambda out: float((out["logits"].argmax(1) == labels).mean())


def _acc(s, metric):
    return s.compare(DEMO / "eval.npz", metric=metric).metric


def test_w8a8_within_one_point_of_float(demo):
    s, metric = demo
    m = _acc(s, metric)
    assert m["float"] > 0.95
    assert m["quantized"] >= m["float"] - 0.01


def test_int16_within_a_tenth_of_a_point(demo):
    s, metric = demo
    base = s.recipe
    s.recipe = replace(base, activations=replace(base.activations, precision=Precision.INT16),
                       weights=replace(base.weights, precision=Precision.INT16))
    try:
        m = _acc(s, metric)
    finally:
        s.recipe = base
    assert abs(m["quantized"] - m["float"]) <= 0.001


def test_per_tensor_weights_show_the_problem(demo):
    s, metric = demo
    base = s.recipe
    s.recipe = replace(base, weights=replace(base.weights, granularity=PerTensor()))
    try:
        m = _acc(s, metric)
    finally:
        s.recipe = base
    assert m["quantized"] < m["float"] - 0.03


def test_an_sqnr_change_comes_with_its_sampling_interval(demo):
    s, _ = demo
    base = s.recipe
    before = s.compare(DEMO / "eval.npz", limit=256)
    pooled = 10 * np.log10(before.sample_signal["logits"].sum() / before.sample_err2["logits"].sum())
    assert pooled == pytest.approx(before.outputs.loc["logits", "sqnr_db"], abs=1e-4)
    s.recipe = replace(base, activations=replace(base.activations, precision=Precision.INT16),
                       weights=replace(base.weights, precision=Precision.INT16))
    try:
        after = s.compare(DEMO / "eval.npz", limit=256)
        fewer = s.compare(DEMO / "eval.npz", limit=128)
    finally:
        s.recipe = base
    change = after.change_from(before).loc["logits"]
    sqnr = [c.outputs.loc["logits", "sqnr_db"] for c in (before, after)]
    assert change.change_db == pytest.approx(sqnr[1] - sqnr[0])
    assert 5 < change.interval_lo_db < change.change_db < change.interval_hi_db and change.samples == 256
    same = before.change_from(before).loc["logits"]
    assert same.interval_lo_db == same.interval_hi_db == 0
    assert fewer.change_from(before).empty  # other samples: no paired interval
