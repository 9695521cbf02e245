import numpy as np
import onnxruntime as ort

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
    assert list(lg.layers) == ["conv1", "dwconv", "pwconv", "add", "mul", "concat", "gap", "fc"]
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
