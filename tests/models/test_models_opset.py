"""Opset upgrades on load (to 13) and on request (upgrade_opset)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from workbench.errors import WorkbenchError
from workbench.models import load_onnx, upgrade_opset


def test_opset11_model_is_upgraded_and_computes_the_same(mk):
    proto = mk.opset11_model()
    m = load_onnx(proto)
    assert m.original_opset == 11 and m.opset() == 13
    assert any("upgraded opset 11 → 13" in n for n in m.notes)
    assert {n.op_type for n in m.proto.graph.node} >= {"Split", "ReduceSum", "Squeeze"}
    split = next(n for n in m.proto.graph.node if n.op_type == "Split")
    assert len(split.input) == 2, "opset 13 Split takes split sizes as an input"
    x = mk.f32(6, 4)
    np.testing.assert_allclose(mk.ort_run(m.proto, {"x": x})[0], mk.ort_run(proto, {"x": x})[0], rtol=1e-6)
    np.testing.assert_allclose(mk.ort_run(m.proto, {"x": x})[0], x[:, :1] * x[:, 1:].sum(1, keepdims=True),
                               rtol=1e-5)


def test_opset11_per_channel_dequantize_written_by_old_quantizers_loads(mk):
    """ORT's quantizer wrote DequantizeLinear(axis=...) into opset 11 models, which opset 11 forbids."""
    wq = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    scale = np.array([0.5, 0.25, 2.0], np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], axis=1),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    proto = mk.make(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                    {"wq": wq, "s": scale, "z": np.zeros(3, np.int8)}, opset=11)
    m = load_onnx(proto)
    assert m.opset() == 13
    assert any("valid only after the opset upgrade" in n for n in m.notes)
    x = mk.f32(2, 4)
    np.testing.assert_allclose(mk.ort_run(m.proto, {"x": x})[0], x @ (wq * scale), rtol=1e-5)


def test_upgrade_to_21_allows_int16_quantize(mk):
    m = load_onnx(mk.conv_model())
    up = upgrade_opset(m.proto, 21)
    assert [o.version for o in up.opset_import if o.domain == ""] == [21]
    assert up.ir_version >= 10
    assert upgrade_opset(up, 13) is up
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    qdq = mk.make(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                  {"s": np.array(0.001, np.float32), "z": np.array(0, np.int16)}, opset=13)
    with pytest.raises(WorkbenchError, match="onnxruntime cannot load"):
        load_onnx(qdq)  # int16 QuantizeLinear needs opset 21
    qdq21 = upgrade_opset(qdq, 21)
    x = np.array([[0.1234, -5.0, 20.0]], np.float32)
    np.testing.assert_allclose(mk.ort_run(qdq21, {"x": x})[0], np.round(x * 1000) / 1000, atol=1e-6)
    x16 = load_onnx(qdq21)
    assert x16.opset() == 21 and x16.original_opset == 21


def test_failed_upgrade_names_the_op(mk):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Frobnicate", ["r"], ["y"])]
    proto = mk.make(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], opset=11)
    with pytest.raises(WorkbenchError, match=r"<ModelProto>: cannot upgrade .*opset 11 to 13: op Frobnicate"):
        load_onnx(proto)


def test_upgrade_beyond_supported_opset_is_an_error(mk):
    with pytest.raises(WorkbenchError, match="supports up to opset"):
        upgrade_opset(mk.conv_model(), 999)
