"""Defaults of the plan for the places quantizers handle badly: u8s8 saturation on x86 without
VNNI (pair-fitted int8 scales or uint8 weights where needed), ranges fixed by the op
(Sigmoid/Softmax), float by design."""

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.builders import conv_net, one_io_model
from workbench.numerics import ErrorAccumulator, Histogram
from workbench.quantize.saturation import (
    FIT_RISK_THRESHOLD,
    RISK_THRESHOLD,
    noise_ratio,
    pair_fit_scales,
    reduction_matrix,
    saturation_risk,
    tail_fraction,
)
from workbench.recipe import MinMax, PerChannel, Precision, Symmetry, TensorSpec
from workbench.runtime import Runner
from workbench.runtime.cpu import cpu_features
from workbench.session import Session


def _hist_of_raw(raw: np.ndarray, scale: float = 0.01, zp: int = 0) -> Histogram:
    return Histogram().update(((raw.astype(np.float64) - zp) * scale).astype(np.float32))


def test_tail_fraction():
    h = Histogram().update(np.arange(1000, dtype=np.float32))
    assert tail_fraction(h, 899.5) == pytest.approx(0.1, abs=2e-3)
    assert tail_fraction(h, 2000.0) == 0.0
    assert tail_fraction(h, -1.0) == 1.0


def test_small_weights_cannot_saturate():
    """|w1| + |w2| ≤ 128: 255·128 = 32640 fits int16, whatever the activations are."""
    h = _hist_of_raw(np.full(100, 255))
    w = np.array([[64, 64, -64, -64, 60, 3]], dtype=np.int8)  # Gemm-like [N, K]
    assert saturation_risk(h, 0.01, 0, w, "Gemm", 0) == 0.0


def test_large_pair_with_saturated_inputs():
    """One pair (127, 127): it saturates once an activation exceeds 32767/254 ≈ 129; every raw value is
    255, so the bound is 2 (two activations, each certainly above)."""
    w = np.array([[127, 127]], dtype=np.int8)
    assert saturation_risk(_hist_of_raw(np.full(100, 255)), 0.01, 0, w, "Gemm", 0) == pytest.approx(2.0)
    assert saturation_risk(_hist_of_raw(np.arange(0, 101)), 0.01, 0, w, "Gemm", 0) == 0.0
    # opposite signs never add up: 255·127 = 32385
    assert saturation_risk(_hist_of_raw(np.full(100, 255)), 0.01, 0, np.array([[127, -127]], np.int8),
                           "Gemm", 0) == 0.0


def test_conv_pairs_run_along_channels():
    """Conv weights pair along input channels ([O, kh, kw, C] order): a 1-channel 3x3 kernel pairs
    neighbouring taps, a 2-channel 1x1 kernel pairs its two channels."""
    h = _hist_of_raw(np.full(10, 255))
    w = np.zeros((1, 2, 1, 2), np.int8)
    w[0, 0, 0, :] = 127  # channel 0, both taps: pairs are (c0, c1) per tap → (127, 0) twice
    assert saturation_risk(h, 0.01, 0, w, "Conv", 0) == 0.0
    w[0, 1, 0, 0] = 127  # tap 0 now pairs (127, 127)
    assert saturation_risk(h, 0.01, 0, w, "Conv", 0) == pytest.approx(2.0)


@pytest.mark.parametrize("op_type,shape,axis", [("Conv", (6, 5, 3, 3), 0), ("Gemm", (6, 9), 0),
                                                 ("MatMul", (9, 6), 1)])
def test_pair_fit_scales_bound_every_same_sign_pair(op_type, shape, axis):
    """Rounded at the fitted scales, no same-sign pair of the reduction order exceeds 128 steps (so
    255·128 fits int16); no scale goes down; a row with no pair above 127 steps keeps its scale."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, shape)
    rows = reduction_matrix(w, op_type, axis)
    rows[0] = np.where(np.arange(rows.shape[1]) % 2, 0.0, rows[0])  # row 0: every pair has a zero in it
    w = (np.moveaxis(rows.reshape(shape[0], shape[2], shape[3], shape[1]), -1, 1) if op_type == "Conv"
         else rows if axis == 0 else rows.T)
    plain = np.abs(reduction_matrix(w, op_type, axis)).max(axis=1) / 127
    fit = pair_fit_scales(w, op_type, axis, plain)
    assert np.all(fit >= plain) and fit[0] == plain[0] and np.any(fit[1:] > plain[1:])
    q = np.rint(reduction_matrix(w, op_type, axis) / fit[:, None])
    q = np.pad(q, ((0, 0), (0, q.shape[1] % 2)))
    for sign in (1, -1):
        pairs = np.maximum(sign * q[:, 0::2], 0) + np.maximum(sign * q[:, 1::2], 0)
        assert pairs.max() <= 128
    assert pair_fit_scales(w, op_type, axis, np.float64(plain.max())) == pytest.approx(fit.max())


def test_noise_ratio_weighs_weight_rounding_against_input_rounding():
    """N(s) = s²/12·K·E[x²] + s_x²/12·‖w‖² summed over output channels."""
    w = np.array([[1.0, 0.5], [0.2, 0.0]])
    old, new = np.array([1 / 127, 0.2 / 127]), np.array([1.5 / 127, 0.2 / 127])
    power, s_x = 0.3, 0.02

    def n(s):
        return float(np.sum(s ** 2 * 2 * power + s_x ** 2 * np.square(w).sum(axis=1)))
    assert noise_ratio(w, "Gemm", 0, old, new, power, s_x) == pytest.approx(n(new) / n(old))
    assert noise_ratio(w, "Gemm", 0, old, old, power, s_x) == 1.0
    one, two = np.float64(1 / 127), np.float64(2 / 127)  # per-tensor scales
    assert noise_ratio(w, "Gemm", 0, one, two, power, s_x) == pytest.approx(n(np.full(2, two)) / n(np.full(2, one)))


def _heavy_tailed(n: int, seed: int, channels: int = 16, bright: float = 0.05) -> np.ndarray:
    """Relu-like activations: mostly small, and a share ``bright`` of pixels bright in every channel at
    once (so the two activations of a weight pair are high together)."""
    rng = np.random.default_rng(seed)
    x = np.minimum(rng.exponential(0.4, (n, channels, 8, 8)), 6)
    hot = rng.uniform(size=(n, 1, 8, 8)) < bright
    return np.where(hot, rng.uniform(5.5, 6, x.shape), x).astype(np.float32)


def _pair_fit_session(bright: float) -> Session:
    """conv: each output channel has one big weight (1.0) beside a small one (0.06) on the next input
    channel, the rest ~0.25: int8 pairs of 135 steps saturate on the bright pixels; a 6 % larger step
    stops that for +8 % predicted noise. conv2 reads a Relu output; it may take either form."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.25, (8, 16, 1, 1))
    w[:, 0], w[:, 1] = 1.0, 0.06
    w2 = rng.normal(0, 0.3, (4, 8, 1, 1))
    model = one_io_model("pair_fit", [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
                                      helper.make_node("Relu", ["h"], ["r"], name="relu"),
                                      helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")],
                         [numpy_helper.from_array(w.astype(np.float32), "w"),
                          numpy_helper.from_array(w2.astype(np.float32), "w2")], ["N", 16, 8, 8], ["N", 4, 8, 8])
    s = Session(model, target="ort-cpu", progress=False)
    s.calibrate(_heavy_tailed(32, 1, bright=bright))
    return s


@pytest.fixture(scope="module")
def pair_fit():
    return _pair_fit_session(0.05)


def test_plan_follows_a_change_of_target(pair_fit):
    """The session's plan and QDQ model are cached on (recipe, target): setting ``target`` alone is
    enough to get the other form."""
    s = pair_fit
    base_target = s.target
    assert s.plan.tensors["w"].qparams.signed
    s.target = replace(base_target, pair_fit_noise=0.0)
    try:
        assert not s.plan.tensors["w"].qparams.signed
        assert any(t.data_type == onnx.TensorProto.UINT8 and t.name == "w_quantized"
                   for t in s.quantize().graph.initializer)
    finally:
        s.target = base_target
    assert s.plan.tensors["w"].qparams.signed


def test_rarely_saturating_layer_takes_only_cheap_pair_fitted_scales():
    """Between FIT_RISK_THRESHOLD and RISK_THRESHOLD (0.5 % bright pixels: risk ≈ 0.006) a layer is
    pair-fitted when that is cheap, and otherwise left as it is (no uint8 kernels for rare saturation)."""
    s = _pair_fit_session(0.005)
    layer = s.graph.layers["conv"]
    xq, wq = s.plan.tensors["x"].qparams, s.plan.tensors["w"].qparams
    w = s.weights["w"]
    plain = np.abs(w).reshape(8, -1).max(axis=1) / 127
    risk = saturation_risk(s.calibration.histograms["x"], float(xq.scale), int(xq.zero_point),
                           np.rint(w / plain[:, None, None, None]).astype(np.int64), layer.op_type, 0,
                           channels=s.calibration.channel_range("x"))
    assert FIT_RISK_THRESHOLD < risk <= RISK_THRESHOLD
    assert wq.signed and np.asarray(wq.scale) == pytest.approx(1.06 / 127, rel=1e-6)
    base_target = s.target
    s.target = replace(base_target, pair_fit_noise=0.001)  # the fit costs more than +0.1 %: too dear now
    try:
        wq = s.plan.tensors["w"].qparams
        assert wq.signed and np.asarray(wq.scale) == pytest.approx(plain, rel=1e-6)  # plain int8
    finally:
        s.target = base_target


def test_pair_fitted_int8_weights_run_as_exact_in_onnxruntime(pair_fit):
    s = pair_fit
    wp = s.plan.tensors["w"]
    assert wp.qparams.signed and np.all(wp.qparams.zero_point == 0)  # int8: onnxruntime's fast kernels
    assert np.asarray(wp.qparams.scale) == pytest.approx(1.06 / 127, rel=1e-6)
    assert any("raised so that no pair" in n and "'conv'" in n for n in s.plan.notes)
    x = _heavy_tailed(16, 2)
    ref = Runner(s.prepared).run({"x": x})["y"]

    def exact_and_deployed() -> tuple[float, float]:
        q = s.quantize()
        return tuple(ErrorAccumulator().update(ref, Runner(q, optimize=o).run({"x": x})["y"]).result()["sqnr_db"]
                     for o in (False, True))
    exact, deployed = exact_and_deployed()
    assert abs(exact - deployed) < 0.05 and exact > 35.0
    base_target = s.target
    s.target = replace(base_target, avoid_u8s8_saturation=False)
    try:
        plain_exact, plain_deployed = exact_and_deployed()
    finally:
        s.target = base_target
    assert exact > plain_exact - 0.5  # the larger step costs little exact SQNR (measured: 0.13 dB)
    s.target = replace(base_target, pair_fit_noise=0.0)  # never fitted: uint8 weights instead
    try:
        assert not s.plan.tensors["w"].qparams.signed
    finally:
        s.target = base_target
    if cpu_features().u8s8_saturates:  # the plain int8 scales saturate here (measured: 38.5 → 36.5 dB)
        assert plain_exact - plain_deployed > 1.0


def _binary_data(n: int, seed: int) -> np.ndarray:
    """Images of 0/1 pixels (like MNIST): the uint8 grid sits at 0 and 255, where u8s8 saturates."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n, 3, 16, 16)) > 0.6).astype(np.float32)


@pytest.fixture(scope="module")
def binary():
    s = Session(conv_net(seed=3), progress=False)
    s.calibrate(_binary_data(64, 1), batch_size=32)
    return s


def test_saturating_layer_gets_uint8_weights_with_the_same_values(binary):
    s = binary
    plan = s.plan
    w1 = plan.tensors[s.graph.layers["conv1"].weight]
    assert not w1.qparams.signed and np.all(w1.qparams.zero_point == 128)
    dw = plan.tensors[s.graph.layers["dwconv"].weight]
    assert dw.qparams.signed  # depthwise: onnxruntime's kernel accumulates in int32
    assert any("uint8 with zero-point 128" in n and "conv1" in n for n in plan.notes)
    # the same dequantized values: the exact outputs do not change at all (uint8 weights only, no
    # pair-fitted scales, against plain int8)
    base_target = s.target
    data = _binary_data(16, 2)
    s.target = replace(base_target, pair_fit_noise=0.0)
    with_u8 = Runner(s.quantize()).run({"x": data})["logits"]
    s.target = replace(base_target, avoid_u8s8_saturation=False)
    try:
        assert s.plan.tensors[w1.name].qparams.signed
        without = Runner(s.quantize()).run({"x": data})["logits"]
    finally:
        s.target = base_target
    np.testing.assert_array_equal(with_u8, without)


def test_explicit_int8_override_is_kept(binary):
    s = binary
    w = s.graph.layers["conv1"].weight
    base = s.recipe
    s.recipe = base.with_tensor(w, TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True,
                                              granularity=PerChannel()))
    try:
        assert s.plan.tensors[w].qparams.signed
    finally:
        s.recipe = base


def test_deployed_matches_exact_where_int8_weights_would_saturate(binary):
    """On this machine: the ort-cpu file's deployed SQNR is within 0.5 dB of exact (on a CPU without
    VNNI the int8-weight file would lose more; on one with VNNI both agree anyway)."""
    s = binary
    cmp = s.compare(_binary_data(64, 5), batch_size=32)
    row = cmp.outputs.loc["logits"]
    assert abs(row["sqnr_db"] - row["deployed_sqnr_db"]) <= 0.5
    assert cmp.deployed_warning is None
    assert cmp.cpu["vnni"] in (True, False, None)
    if cpu_features().u8s8_saturates:  # the same recipe with int8 weights everywhere does saturate here
        base_target = s.target
        s.target = replace(base_target, avoid_u8s8_saturation=False)
        try:
            bad = s.compare(_binary_data(64, 5), batch_size=32)
        finally:
            s.target = base_target
        gap = bad.deployed_gap_db
        assert gap is not None and gap > 0.5
        assert "exact arithmetic" in bad.deployed_warning and "VNNI" in bad.deployed_warning


def _silu_net() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "c.w"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 6)).astype(np.float32), "fc.w")]
    nodes = [
        helper.make_node("Conv", ["x", "c.w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["sig"], name="sigmoid"),
        helper.make_node("Mul", ["c", "sig"], ["silu"], name="silu"),
        helper.make_node("GlobalAveragePool", ["silu"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_sigmoid_output_takes_the_fixed_range():
    s = Session(_silu_net(), progress=False)
    # small inputs: the sigmoid outputs stay well inside (0, 1), a calibrated range would be narrower
    s.calibrate(np.random.default_rng(1).normal(0, 0.2, (32, 3, 8, 8)).astype(np.float32))
    t = s.plan.tensors["sig"]
    assert (t.lo, t.hi) == (0.0, 1.0)
    assert float(t.qparams.scale) == np.float32(1 / 255) and int(t.qparams.zero_point) == 0
    assert any("fixed range" in n and "'sig'" in n for n in s.plan.notes)
    observed = s.calibration.histograms["sig"]
    assert observed.min > 0.0 and observed.max < 0.9
    # a tensor override replaces the default
    spec = replace(s.recipe.activations, range=MinMax())
    s.recipe = s.recipe.with_tensor("sig", spec)
    t = s.plan.tensors["sig"]
    assert t.hi == pytest.approx(observed.max)


def test_per_channel_tails_follow_the_wide_channels():
    """Two wide channels among 64 narrow ones: a (127, 127) weight pair on them saturates whenever both
    are above ~129, which the tensor-wide tail (the narrow channels' mass) hides; on two narrow
    channels it never does. Equal channels: the same bound as without them."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 60, (32, 64, 4, 4))
    raw[:, :2] = rng.uniform(0, 255, (32, 2, 4, 4))
    x = (raw * 0.01).astype(np.float32)
    h = Histogram().update(x)
    channels = (x.min(axis=(0, 2, 3)), x.max(axis=(0, 2, 3)))

    def risks(first: int) -> tuple[float, float]:
        w = np.zeros((4, 64, 1, 1), np.int8)
        w[:, first:first + 2] = 127
        return (saturation_risk(h, 0.01, 0, w, "Conv", 0),
                saturation_risk(h, 0.01, 0, w, "Conv", 0, channels=channels))

    tensor_wide, per_channel = risks(0)
    assert per_channel > 5 * tensor_wide and per_channel > 0.5
    tensor_wide, per_channel = risks(2)
    assert per_channel < tensor_wide / 5
    same = (np.full(64, 0.0), np.full(64, 2.0))
    w = np.zeros((4, 64, 1, 1), np.int8)
    w[:, :2] = 127
    assert saturation_risk(h, 0.01, 0, w, "Conv", 0, channels=same) == pytest.approx(
        saturation_risk(h, 0.01, 0, w, "Conv", 0))
