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
