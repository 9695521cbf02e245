"""An int32 bias that would overflow at s_in·s_w (an output channel whose weights are negligible
beside its bias) raises that channel's weight scale instead of leaving the bias float: onnxruntime
quantizes a float bias itself when it fuses the layer, clamping it to int32 (on MediaPipe's hand
landmark model a dead channel's bias −0.084 ran as −0.047 and output SQNR moved by 4 dB)."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from tests.builders import one_io_model
from workbench.numerics import ErrorAccumulator
from workbench.quantize.plan import BIAS_LIMIT
from workbench.runtime import Runner
from workbench.session import Session

DEAD = 2  # output channel of conv_a with ~zero weights and a bias


def dead_channel_net() -> onnx.ModelProto:
    """x → conv_a (channel DEAD: weights ~1e-9, bias 0.5) → Relu → conv_c → Relu → conv_y → y."""
    rng = np.random.default_rng(0)
    wa = rng.normal(0, 0.5, (4, 3, 3, 3))
    wa[DEAD] *= 2e-9
    ba = rng.normal(0, 0.1, 4)
    ba[DEAD] = 0.5
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in [
        ("wa", wa), ("ba", ba), ("wc", rng.normal(0, 0.5, (4, 4, 3, 3))), ("bc", rng.normal(0, 0.1, 4)),
        ("wy", rng.normal(0, 0.5, (2, 4, 3, 3)))]]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
             helper.make_node("Conv", ["ra", "wc", "bc"], ["c"], name="conv_c", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["rc"], name="relu_c"),
             helper.make_node("Conv", ["rc", "wy"], ["y"], name="conv_y", pads=[1, 1, 1, 1])]
    return one_io_model("dead_channel", nodes, inits, ["N", 3, 8, 8], ["N", 2, 8, 8])


def _session() -> Session:
    s = Session(dead_channel_net(), progress=False)
    s.calibrate(np.random.default_rng(2).normal(size=(16, 3, 8, 8)).astype(np.float32))
    return s


def test_dead_channel_scale_is_raised_and_the_bias_stays_int32():
    s = _session()
    plan = s.plan
    assert "ba" in plan.bias_scales
    w = plan.tensors["wa"].qparams
    s_in = float(plan.tensors["x"].qparams.scale)
    wa = s.weights["wa"]
    per_channel = np.abs(wa).reshape(4, -1).max(1) / 127
    live = np.arange(4) != DEAD
    np.testing.assert_allclose(w.scale[live], per_channel[live], rtol=1e-6)  # other channels as they were
    assert w.scale[DEAD] > 100 * per_channel[DEAD]
    assert w.scale[DEAD] * s_in * BIAS_LIMIT >= 0.5 * (1 - 1e-6)  # the bias now fits
    assert np.all(np.abs(np.rint(s.weights["ba"] / plan.bias_scales["ba"])) <= BIAS_LIMIT)
    assert any("weight scales of 1 layer(s) raised" in n for n in plan.notes)


def test_layer_fuses_and_the_outputs_do_not_move(tmp_path):
    s = _session()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    q = s.quantize()
    ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 2, ops  # conv_a and conv_c (conv_y writes the float output)
    x = np.random.default_rng(3).normal(size=(8, 3, 8, 8)).astype(np.float32)
    ref = Runner(s.prepared).run({"x": x})["y"]
    exact = Runner(q).run({"x": x})["y"]
    deployed = Runner(q, optimize=True).run({"x": x})["y"]
    assert ErrorAccumulator().update(ref, exact).result()["sqnr_db"] > 25.0
    assert ErrorAccumulator().update(exact, deployed).result()["sqnr_db"] > 40.0  # float bias (clamped): 18.7
