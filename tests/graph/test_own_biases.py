"""A bias read by several convolutions is copied per layer: each quantized bias takes its own
layer's scale s_in·s_w, and onnxruntime fuses DQ → Conv → Q only when it does."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from tests.builders import one_io_model
from workbench.graph.prepare import own_biases, prepare
from workbench.runtime import Runner
from workbench.session import Session


def shared_bias_net() -> onnx.ModelProto:
    """x → Conv a (bias b) → Relu → Conv c (bias b, the same initializer) → Relu → y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in [
        ("wa", rng.normal(0, 0.5, (4, 3, 3, 3))), ("wc", rng.normal(0, 0.5, (4, 4, 3, 3))),
        ("b", rng.normal(0, 0.1, 4))]]
    nodes = [helper.make_node("Conv", ["x", "wa", "b"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
             helper.make_node("Conv", ["ra", "wc", "b"], ["c"], name="conv_c", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu_c"),
             helper.make_node("Conv", ["r", "wc", "b"], ["y"], name="conv_y", pads=[1, 1, 1, 1])]
    return one_io_model("shared_bias", nodes, inits, ["N", 3, 8, 8], ["N", 4, 8, 8])


def test_each_conv_gets_its_own_copy_and_the_function_is_unchanged():
    m = shared_bias_net()
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    prepared, notes = prepare(m)
    biases = [n.input[2] for n in prepared.graph.node if n.op_type == "Conv"]
    assert len(set(biases)) == 3 and biases[0] == "b"  # the first reader keeps the original name
    assert any("bias initializer(s) read by several layers copied" in n for n in notes)
    inits = {t.name: numpy_helper.to_array(t) for t in prepared.graph.initializer}
    for name in biases:
        np.testing.assert_array_equal(inits[name], inits["b"])
    np.testing.assert_array_equal(Runner(prepared).run({"x": x})["y"], Runner(m).run({"x": x})["y"])
    assert own_biases(prepared) == 0  # nothing left to copy


def test_quantized_convs_fuse_into_integer_kernels(tmp_path):
    s = Session(shared_bias_net(), progress=False)
    s.calibrate(np.random.default_rng(2).normal(size=(16, 3, 8, 8)).astype(np.float32))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(s.quantize().SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 2, ops  # conv_a and conv_c (conv_y writes the float output)
