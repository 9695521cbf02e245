import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tests.builders import conv_net, conv_net_data
from workbench.graph.layers import find_layers
from workbench.graph.prepare import QDQ_OPSET, prepare


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_prepare_folds_batchnorm_and_keeps_outputs():
    model = conv_net()
    prepared, notes = prepare(model)
    assert not any(n.op_type == "BatchNormalization" for n in prepared.graph.node)
    assert any("BatchNormalization" in n for n in notes)
    assert prepared.opset_import[0].version == QDQ_OPSET
    x = conv_net_data(16)
    np.testing.assert_allclose(_run(prepared, x), _run(model, x), rtol=1e-4, atol=1e-5)


def test_layers_follow_qdq_placement_habits():
    prepared, _ = prepare(conv_net())
    lg = find_layers(prepared)
    # "mul" multiplies by a constant: not a layer of its own
    assert list(lg.layers) == ["conv1", "dwconv", "pwconv", "add", "concat", "gap", "fc"]
    conv1 = lg.layers["conv1"]
    # Relu fused: the layer's output is the Relu output, no QDQ in between.
    assert conv1.fused == ("relu1",) and conv1.output == "r1"
    assert conv1.weight == "c1.w" and conv1.weight_axis == 0
    assert lg.layers["fc"].weight_axis == 0  # Gemm transB=1
    assert lg.layers["add"].inputs == ("pw", "r1")
    assert ("res", "mp") in lg.passthrough and ("gap", "flat") in lg.passthrough
    groups = lg.groups(lg.activation_tensors(), share_concat=False)
    assert ["res", "mp"] in [sorted(g, key=["res", "mp"].index) for g in groups if "mp" in g]
    shared = lg.groups(lg.activation_tensors(), share_concat=True)
    cat_group = next(g for g in shared if "cat" in g)
    assert {"mp", "half", "cat", "res"} <= set(cat_group)


def _affine_hardswish_net() -> onnx.ModelProto:
    """Conv → Mul(c, x) → Add(x, c) → x·clip(x+3, 0, 6)/6 → Div... as PaddleOCR's exporter writes."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", rng.normal(0, 0.5, (4, 3, 3, 3))), ("b", rng.normal(0, 0.1, 4)),
        ("s", np.array([1.7])), ("t", rng.normal(0, 0.3, (1, 4, 1, 1))),
        ("three", np.array(3.0)), ("zero", np.array(0.0)), ("six", np.array(6.0)),
        ("w2", rng.normal(0, 0.5, (2, 4, 1, 1)))]]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["s", "c"], ["m"], name="scale"),
        helper.make_node("Add", ["m", "t"], ["a"], name="shift"),
        helper.make_node("Add", ["a", "three"], ["a3"], name="hs_add"),
        helper.make_node("Clip", ["a3", "zero", "six"], ["cl"], name="hs_clip"),
        helper.make_node("Mul", ["a", "cl"], ["mc"], name="hs_mul"),
        helper.make_node("Div", ["mc", "six"], ["hs"], name="hs_div"),
        helper.make_node("Conv", ["hs", "w2"], ["y"], name="conv2"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_constant_affine_folds_into_conv_and_hardswish_fuses():
    model = _affine_hardswish_net()
    prepared, notes = prepare(model)
    ops = [n.op_type for n in prepared.graph.node]
    assert ops == ["Conv", "HardSwish", "Conv"], ops
    assert any("folded 2" in n for n in notes) and any("hard-swish" in n for n in notes)
    x = np.random.default_rng(0).normal(0, 1, (4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(prepared, x), _run(model, x), rtol=1e-4, atol=1e-5)
    lg = find_layers(prepared)
    assert [layer.op_type for layer in lg.layers.values()] == ["Conv", "HardSwish", "Conv"]


def _residual_relu_net() -> onnx.ModelProto:
    """x → conv a; x → conv b; Relu(a + b) → conv c → y (a ResNet/BlazeFace block)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), n)
             for n, s in [("wa", (4, 3, 3, 3)), ("wb", (4, 3, 1, 1)), ("wc", (2, 4, 3, 3))]]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="conv_b"),
             helper.make_node("Add", ["a", "b"], ["sum"], name="add"),
             helper.make_node("Relu", ["sum"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wc"], ["y"], name="conv_c", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_relu_fuses_into_a_residual_add(tmp_path):
    """One grid for Relu(a + b), as onnxruntime's QLinearAdd clamps to it: no second rounding of the
    sum's negative range and no requantizing DQ → Q pair left in the deployed graph."""
    from workbench.session import Session

    prepared, _ = prepare(_residual_relu_net())
    add = find_layers(prepared).layers["add"]
    assert add.fused == ("relu",) and add.output == "r" and "relu" not in find_layers(prepared).layers
    s = Session(_residual_relu_net(), progress=False)
    s.calibrate(np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32))
    assert "sum" not in s.plan.tensors and s.plan.tensors["r"].lo == 0.0
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(s.quantize().SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearAdd") == 1 and "Relu" not in ops and ops.count("QuantizeLinear") == 1, ops  # x only


def test_sigmoid_fuses_into_the_weighted_layer_before_it():
    """conv → Sigmoid fuses (its logits stay float), on a squeeze-excitation gate and on a map alike;
    a Sigmoid after a pooling op stays a layer of its own."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), n)
             for n, s in [("w1", (4, 3, 3, 3)), ("ws", (4, 4, 1, 1)), ("wm", (4, 4, 1, 1))]]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r1"], ["pooled"], name="gap"),
             helper.make_node("Conv", ["pooled", "ws"], ["logits"], name="se_conv"),
             helper.make_node("Sigmoid", ["logits"], ["gate"], name="se_gate"),
             helper.make_node("Mul", ["r1", "gate"], ["excited"], name="excite"),
             helper.make_node("Conv", ["excited", "wm"], ["m"], name="map_conv"),
             helper.make_node("Sigmoid", ["m"], ["sm"], name="map_sigmoid"),
             helper.make_node("AveragePool", ["sm"], ["p"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("Sigmoid", ["p"], ["y"], name="pool_sigmoid")]
    g = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 7, 7])], inits)
    prepared, _ = prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    layers = find_layers(prepared).layers
    assert layers["se_conv"].fused == ("se_gate",) and layers["se_conv"].output == "gate"
    assert layers["map_conv"].fused == ("map_sigmoid",) and "pool_sigmoid" in layers


def _residual_layernorm_net() -> onnx.ModelProto:
    """x → proj (MatMul) + x → LayerNormalization → head (MatMul) → y: a transformer's residual stream."""
    from tests.builders import one_io_model

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in [
        ("w1", rng.normal(0, 0.3, (16, 16))), ("g", np.ones(16)), ("b", np.zeros(16)),
        ("w2", rng.normal(0, 0.3, (16, 4)))]]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="proj"),
             helper.make_node("Add", ["h", "x"], ["res"], name="residual"),
             helper.make_node("LayerNormalization", ["res", "g", "b"], ["ln"], name="norm", axis=-1),
             helper.make_node("MatMul", ["ln", "w2"], ["y"], name="head")]
    return one_io_model("ln", nodes, inits, ["N", 8, 16], ["N", 8, 4], opset=17)


def _outlier_tokens(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, 1, (n, 8, 16))
    x[..., 3] *= 60  # one outlier channel, as in BERT's residual stream
    return x.astype(np.float32)


def test_layernorm_input_stays_float():
    """The residual sum feeding a LayerNormalization is not quantized (its outlier channels would take
    the other channels' resolution; MiniLM 3.4 → 6.4 dB); the LayerNorm output is, where a MatMul reads
    it. Measured on this net: 19.7 dB with the sum quantized, 20.7 without."""
    from workbench.numerics import ErrorAccumulator
    from workbench.runtime import Runner
    from workbench.session import Session

    s = Session(_residual_layernorm_net(), progress=False)
    s.calibrate(_outlier_tokens(64, 1), batch_size=16)
    assert "norm" not in s.graph.layers and s.graph.layers["residual"].inputs == ("h", "x")
    assert "res" not in s.plan.tensors and {"h", "x", "ln"} <= set(s.plan.tensors)
    x = _outlier_tokens(32, 2)
    ref, got = Runner(s.prepared).run({"x": x})["y"], Runner(s.quantize()).run({"x": x})["y"]
    assert ErrorAccumulator().update(ref, got).sqnr_db > 20.2
