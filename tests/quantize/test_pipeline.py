"""End to end on a small real graph: plan → QDQ → onnxruntime, parameters read back."""

import numpy as np
import onnx
import pytest

from tests.builders import conv_net, conv_net_data
from workbench.errors import WorkbenchError
from workbench.numerics import fake_quantize
from workbench.quantize import read_qdq_params, verify_qdq
from workbench.recipe import LayerSpec, Precision, TensorSpec
from workbench.runtime import Runner
from workbench.session import Session


@pytest.fixture(scope="module")
def session():
    s = Session(conv_net(), progress=False)
    s.calibrate(conv_net_data(64), batch_size=16)
    return s


def test_qdq_model_passes_checker_and_matches_plan(session):
    model = session.quantize()
    onnx.checker.check_model(model, full_check=True)
    plan = session.plan
    _, qdq = session._build()
    assert verify_qdq(model, plan, qdq.effective) == []
    read = read_qdq_params(model)
    assert read["r1"].bits == 8 and not read["r1"].signed  # ort-cpu: uint8 activations
    w = read[qdq.effective["c1.w"]]
    assert w.bits == 8 and w.axis == 0 and w.scale.shape == (8,)
    # int8 symmetric, stored as uint8 with zero-point 128 where u8s8 kernels would saturate (see
    # tests/quantize/test_defaults.py): conv1 reads a signed input whose uint8 codes sit around 128
    assert (w.signed and np.all(w.zero_point == 0)) or (not w.signed and np.all(w.zero_point == 128))
    w_dw = read[qdq.effective["dw.w"]]
    assert w_dw.signed and np.all(w_dw.zero_point == 0)  # depthwise: never saturates
    assert "logits" not in read  # model outputs stay float
    # the concat inputs do not share a scale on ort-cpu
    half = read[qdq.effective["half"]]  # half = 0.5·mp reads mp's integers on a grid half as wide
    assert not np.array_equal(half.scale, read["res"].scale)
    np.testing.assert_allclose(half.scale, 0.5 * read["res"].scale, rtol=1e-6)
    np.testing.assert_array_equal(half.zero_point, read["res"].zero_point)


def test_simulated_tensor_equals_numpy_fake_quant(session):
    """Oracle: the value consumers read is exactly our fake_quantize of the float tensor."""
    _, qdq = session._build()
    runner = Runner(session.quantize(), outputs=["r1", qdq.effective["r1"], "logits"])
    out = runner.run({"x": conv_net_data(8, seed=5)})
    qp = session.plan.tensors["r1"].qparams
    np.testing.assert_array_equal(out[qdq.effective["r1"]], fake_quantize(out["r1"], qp))


def test_precisions_order_errors(session):
    data = conv_net_data(32, seed=9)
    int8 = session.compare(data).outputs.loc["logits", "sqnr_db"]
    base = session.recipe
    session.recipe = base.__class__(target=base.target, activations=base.activations.__class__(
        Precision.INT16, base.activations.symmetry, base.activations.signed, range=base.activations.range),
        weights=base.weights.__class__(Precision.INT16, base.weights.symmetry, True, base.weights.granularity))
    int16 = session.compare(data).outputs.loc["logits", "sqnr_db"]
    session.recipe = base
    assert 20 < int8 < int16 - 20, (int8, int16)


def test_float_and_fp16_layers(session):
    base = session.recipe
    try:
        session.set("dwconv", precision="float32")
        session.set("fc", precision="float16")
        model = session.quantize()
        plan = session.plan
        assert "dw.w" not in plan.tensors and "fc.w" not in plan.tensors
        assert plan.layer_precision["dwconv"] == "float32" and plan.layer_precision["fc"] == "float16"
        casts = [n for n in model.graph.node if n.op_type == "Cast"]
        assert len(casts) >= 4
        fp16_inits = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
        assert {t.name for t in fp16_inits} >= {"fc.w_fp16", "fc.b_fp16"}
        cmp = session.compare(conv_net_data(16, seed=3))
        assert cmp.layers.set_index("layer").loc["fc", "precision"] == "float16"
    finally:
        session.recipe = base


def test_int16_layer_and_int4_weights(session):
    base = session.recipe
    try:
        session.set("conv1", precision="int16")
        session.set("pwconv", precision="int4")
        read = read_qdq_params(session.quantize())
        _, qdq = session._build()
        assert read["r1"].bits == 16  # conv1's output, read by dwconv and add: the most precise wins
        assert read[qdq.effective["pw.w"]].bits == 4
        assert verify_qdq(session.quantize(), session.plan, qdq.effective) == []
        session.compare(conv_net_data(8))
    finally:
        session.recipe = base


def test_tensorrt_target_shares_concat_scale_and_is_symmetric():
    s = Session(conv_net(), target="tensorrt", progress=False)
    s.calibrate(conv_net_data(32))
    read = read_qdq_params(s.quantize())
    assert read["half"].scale == read["mp"].scale == read["cat"].scale
    assert all(p.signed and not np.any(p.zero_point) for p in read.values())


def test_overrides_naming_missing_things_are_errors(session):
    base = session.recipe
    with pytest.raises(WorkbenchError, match="'nope' is not a quantizable layer"):
        session.recipe = base.with_layer("nope", LayerSpec(precision=Precision.INT16))
        session.quantize()
    session.recipe = base
    with pytest.raises(WorkbenchError, match="'ghost' does not exist"):
        session.recipe = base.with_tensor("ghost", TensorSpec())
        session.quantize()
    session.recipe = base
    with pytest.raises(WorkbenchError, match="'bn1' is not quantized"):
        session.recipe = base.with_tensor("bn1", TensorSpec())
        session.quantize()
    session.recipe = base


def test_weight_stats_and_calibration_round_trip(session):
    from workbench.calibration import Calibration

    ws = session.weight_stats("dwconv")
    w = session.weights["dw.w"]
    np.testing.assert_array_equal(ws.channel_min, w.reshape(8, -1).min(1))
    np.testing.assert_array_equal(ws.channel_max, w.reshape(8, -1).max(1))
    assert ws.histogram.count == w.size
    with pytest.raises(WorkbenchError, match="not a layer with a weight"):
        session.weight_stats("add")
    back = Calibration.from_dict(session.calibration.to_dict())
    assert back.num_samples == session.calibration.num_samples
    np.testing.assert_array_equal(back.histograms["r1"].counts, session.calibration.histograms["r1"].counts)
