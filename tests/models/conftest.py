"""Small ONNX models built with onnx.helper for the model-loading tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def make(nodes, inputs, outputs, inits=(), opset=13, name="g", extra_opsets=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    ir = 7 if opset < 13 else 8
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir)


def conv_model(batch: int | str = "N", opset: int = 13) -> onnx.ModelProto:
    """x [batch,3,8,8] → Conv → Relu → Flatten → Gemm → y [batch,5]."""
    inits = {"W": _f32(4, 3, 3, 3), "B": _f32(4), "G": _f32(5, 144), "gb": _f32(5)}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "G", "gb"], ["y"], name="gemm", transB=1)]
    return make(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])], inits, opset)


def opset11_model() -> onnx.ModelProto:
    """Ops whose attributes became inputs at opset 13 (Split, ReduceSum, Unsqueeze, Squeeze)."""
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3]),
             helper.make_node("ReduceSum", ["b"], ["s"], axes=[1], keepdims=1),
             helper.make_node("Unsqueeze", ["a"], ["u"], axes=[2]),
             helper.make_node("Squeeze", ["u"], ["a2"], axes=[2]),
             helper.make_node("Mul", ["a2", "s"], ["y"])]
    return make(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], opset=11)


def ort_run(proto: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ in float: exact
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


@pytest.fixture
def mk() -> SimpleNamespace:
    return SimpleNamespace(make=make, conv_model=conv_model, opset11_model=opset11_model, ort_run=ort_run,
                           f32=_f32)
