"""A scalar affine chain y = a·h + b (PP-LCNet's learnable affine after each activation) reads h's
integers on the grid a·s_h: the export drops its Mul/Add, y is h's integers with other parameters,
and the constant shift of rounding y's zero-point goes into the bias of the layer reading y."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.builders import one_io_model
from workbench.graph.layers import find_layers
from workbench.graph.prepare import prepare
from workbench.numerics import ErrorAccumulator, quantize
from workbench.recipe import MinMax, Precision, Symmetry, TensorSpec
from workbench.runtime import Runner
from workbench.session import Session

A = 0.5


def affine_net(b: float, *, padded: bool = False) -> onnx.ModelProto:
    """x → conv1 (3x3) → HardSwish h → ·A → +b → y → reader → z. The reader is a 1x1 conv (bias,
    positive weights: a shift of y moves z by ε·ΣW, well above the other mean errors) on an 8x8
    map, or (``padded``) a 3x3 pad-1 depthwise conv on a 4x4 map: 75 % of its outputs touch
    the border, where its bias cannot take a constant shift of y back."""
    rng = np.random.default_rng(0)
    size, out = (4, 8) if padded else (8, 6)
    reader = (np.abs(rng.normal(0, 0.5, (8, 1, 3, 3))) if padded else np.abs(rng.normal(0, 0.5, (6, 8, 1, 1))))
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("w1", rng.normal(0, 0.5, (8, 4, 3, 3))), ("b1", rng.normal(0, 0.3, 8)),
        ("a", [A]), ("b", [b]), ("wr", reader), ("br", rng.normal(0, 0.1, out))]]
    attrs = {"pads": [1, 1, 1, 1], "group": 8} if padded else {}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c1"], ["h"], name="hswish"),
             helper.make_node("Mul", ["h", "a"], ["ha"], name="scale"),
             helper.make_node("Add", ["ha", "b"], ["y"], name="shift"),
             helper.make_node("Conv", ["y", "wr", "br"], ["z"], name="reader", **attrs)]
    return one_io_model("affine", nodes, inits, ["N", 4, size, size], ["N", out, size, size], opset=14, y="z")


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 4, 8, 8)).astype(np.float32)


def _session(b: float) -> Session:
    s = Session(affine_net(b), progress=False)
    s.calibrate(_data(32, 1), batch_size=16)
    return s


@pytest.fixture(scope="module")
def shifted() -> Session:
    """b chosen so that b / s_y sits 0.45 of a step off the integers: y's zero-point rounds by 0.45."""
    s_h = float(_session(0.0).plan.tensors["h"].qparams.scale)  # h's grid does not depend on b
    return _session(-3.45 * A * s_h)


def test_the_chain_is_found():
    prepared, _ = prepare(affine_net(-0.2))
    link = find_layers(prepared).affine["y"]
    assert link.source == "h" and link.nodes == ("scale", "shift")
    assert link.scale == pytest.approx(A) and link.shift == pytest.approx(-0.2)


def test_y_reads_h_integers_on_the_scaled_grid(shifted):
    s = shifted
    plan = s.plan
    assert plan.affine_sources == {"y": "h"}
    h, y = plan.tensors["h"].qparams, plan.tensors["y"].qparams
    b = float(s.graph.affine["y"].shift)
    assert float(y.scale) == pytest.approx(A * float(h.scale), rel=1e-6)
    assert int(y.zero_point) == int(np.rint(int(h.zero_point) - b / float(y.scale)))
    model = s.quantize()
    assert not {"scale", "shift"} & {n.name for n in model.graph.node}  # the Mul and Add are gone
    # oracle: what the reader reads is s_y·(QuantizeLinear(h) − z_y), numpy's quantize of the float h
    _, qdq = s._build()
    x = _data(4, 7)
    out = Runner(qdq.with_probes(), outputs=["h", qdq.effective["y"]]).run({"x": x})
    expected = float(y.scale) * (quantize(out["h"], h).astype(np.float64) - int(y.zero_point))
    np.testing.assert_allclose(out[qdq.effective["y"]], expected, rtol=1e-6, atol=1e-7)


def test_the_zero_point_shift_goes_into_the_reader_bias(shifted):
    """ε = s_y·(z_h − z_y) − b is 0.45 of a step on every value of y; the reader's bias takes back
    ε·ΣW, so its output has no mean error (without it: ε·ΣW per channel)."""
    s = shifted
    plan = s.plan
    h, y = plan.tensors["h"].qparams, plan.tensors["y"].qparams
    eps = float(y.scale) * (int(h.zero_point) - int(y.zero_point)) - float(s.graph.affine["y"].shift)
    assert 0.3 * float(y.scale) < abs(eps) < 0.5 * float(y.scale)
    per_channel = eps * s.weights["wr"].reshape(6, -1).sum(1)
    np.testing.assert_allclose(plan.values["br"], s.weights["br"] - per_channel, rtol=1e-5, atol=1e-7)
    x = _data(64, 9)
    ref = Runner(s.prepared).run({"x": x})["z"]
    got = Runner(s.quantize()).run({"x": x})["z"]
    mean_error = (got - ref).mean(axis=(0, 2, 3))
    assert np.all(np.abs(mean_error) < 0.35 * np.abs(per_channel)), (mean_error, per_channel)


@pytest.mark.parametrize("change", ["override", "switch"])
def test_a_tensor_override_or_the_switch_keeps_y_on_a_grid_of_its_own(shifted, change):
    s = shifted
    base = s.recipe
    if change == "override":
        s.recipe = base.with_tensor("y", TensorSpec(Precision.INT8, Symmetry.ASYMMETRIC, signed=False, range=MinMax()))
    else:
        s.recipe = replace(base, fold_affine_chains=False)
    try:
        assert s.plan.affine_sources == {}
        assert {"scale", "shift"} <= {n.name for n in s.quantize().graph.node}
    finally:
        s.recipe = base


def test_deployed_graph_has_no_float_ops_and_compare_sees_every_layer(shifted, tmp_path):
    s = shifted
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(s.quantize().SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert "Add" not in ops and ops.count("Mul") == ops.count("HardSigmoid") == 1, ops  # HardSwish's Mul
    # h's own DequantizeLinear is read by nothing in the file; compare still measures the HardSwish
    cmp = s.compare(_data(16, 11), batch_size=8)
    assert cmp.layers.set_index("layer").loc["hswish", "sqnr_db"] > 20.0
    z = cmp.outputs.loc["z"]
    assert z["sqnr_db"] > 25.0 and abs(z["sqnr_db"] - z["deployed_sqnr_db"]) < 0.5


def test_linking_removes_a_rounding(shifted):
    """Output SQNR with the chain linked ≥ with y quantized on its own grid (one rounding more)."""
    s = shifted
    x = _data(64, 13)
    ref = Runner(s.prepared).run({"x": x})["z"]
    linked = ErrorAccumulator().update(ref, Runner(s.quantize()).run({"x": x})["z"]).sqnr_db
    base = s.recipe
    s.recipe = base.with_tensor("y", base.activations)  # the default spec, as an override
    try:
        own = ErrorAccumulator().update(ref, Runner(s.quantize()).run({"x": x})["z"]).sqnr_db
    finally:
        s.recipe = base
    assert linked > own, (linked, own)


@pytest.mark.parametrize("steps, linked", [(3.45, False), (9.4, True)])
def test_padded_reader_links_only_where_h_step_makes_b_whole(steps, linked):
    """b of 3.45 steps of y: the shift cannot go into the padded reader's bias, y keeps its own grid.
    b of 9.4 steps: h's step grows by 9.4/9 (< 1/16 off) so that b is exactly 9 steps, no shift."""
    def session(b: float) -> Session:
        s = Session(affine_net(b, padded=True), progress=False)
        s.calibrate(np.random.default_rng(1).normal(0, 1, (32, 4, 4, 4)).astype(np.float32), batch_size=16)
        return s

    s_h = float(session(0.0).plan.tensors["h"].qparams.scale)
    s = session(-steps * A * s_h)
    plan = s.plan
    assert (plan.affine_sources == {"y": "h"}) is linked
    if linked:
        h, y = plan.tensors["h"].qparams, plan.tensors["y"].qparams
        assert float(h.scale) == pytest.approx(s_h * steps / 9, rel=1e-5)  # h's step moved by < 1/16
        shift = float(y.scale) * (int(h.zero_point) - int(y.zero_point)) - float(s.graph.affine["y"].shift)
        assert abs(shift) < 1e-6 * float(y.scale)
        assert "br" not in plan.values  # nothing to take back


def test_h_is_not_regridded_under_a_chain_already_reading_it():
    """Two chains from one h: the first (b = 0, on h's grid as it is) is linked; the second would need
    h's step moved, which would break the first, so it keeps a grid of its own."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("w1", rng.normal(0, 0.5, (8, 4, 3, 3))), ("b1", rng.normal(0, 0.3, 8)), ("a", [A]), ("zero", [0.0]),
        ("wr", np.abs(rng.normal(0, 0.5, (8, 1, 3, 3)))), ("br", rng.normal(0, 0.1, 8)), ("b", [0.0])]]

    def model(b: float) -> onnx.ModelProto:
        inits[-1] = numpy_helper.from_array(np.asarray([b], np.float32), "b")
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
                 helper.make_node("HardSwish", ["c1"], ["h"], name="hswish"),
                 helper.make_node("Mul", ["h", "a"], ["y1"], name="scale1"),
                 helper.make_node("Mul", ["h", "a"], ["ha"], name="scale2"),
                 helper.make_node("Add", ["ha", "b"], ["y2"], name="shift2"),
                 helper.make_node("Add", ["y1", "y2"], ["s"], name="sum"),
                 helper.make_node("Conv", ["s", "wr", "br"], ["z"], name="reader", pads=[1, 1, 1, 1], group=8)]
        return one_io_model("two_chains", nodes, inits, ["N", 4, 4, 4], ["N", 8, 4, 4], opset=14, y="z")

    def session(b: float) -> Session:
        s = Session(model(b), progress=False)
        s.calibrate(np.random.default_rng(1).normal(0, 1, (32, 4, 4, 4)).astype(np.float32), batch_size=16)
        return s

    s_h = float(session(0.0).plan.tensors["h"].qparams.scale)
    s = session(-9.4 * A * s_h)
    assert s.plan.affine_sources == {"y1": "h"}
    assert float(s.plan.tensors["h"].qparams.scale) == pytest.approx(s_h)  # not moved
    y1 = s.plan.tensors["y1"].qparams
    assert float(y1.scale) == pytest.approx(A * s_h, rel=1e-6)


def test_a_chain_ending_in_a_model_output_stays():
    """y is also a model output: the file must still compute it, so its Mul/Add stay."""
    model = affine_net(-0.2)
    model.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    s = Session(model, progress=False)
    s.calibrate(_data(16, 1), batch_size=16)
    assert s.plan.affine_sources == {}
    out = Runner(s.quantize()).run({"x": _data(2, 3)})
    assert set(out) == {"z", "y"}
