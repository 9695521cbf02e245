"""Small ONNX models built with onnx.helper for the runtime tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.models import load_onnx

RNG = np.random.default_rng(1)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def make(nodes, inputs, outputs, inits=(), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def vi(name: str, shape, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def conv_model(batch: int | str = "N", channels: int = 3, size: int = 8) -> onnx.ModelProto:
    """x [batch,C,size,size] → Conv(4,3x3) c → Relu r → Flatten f → Gemm y [batch,5]."""
    side = size - 2
    inits = {"W": f32(4, channels, 3, 3), "B": f32(4), "G": f32(5, 4 * side * side), "gb": f32(5)}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "G", "gb"], ["y"], name="gemm", transB=1)]
    return make(nodes, [vi("x", [batch, channels, size, size])], [vi("y", [batch, 5])], inits)


def gemm_model(batch: int | str = "N") -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """x [batch,4] → Gemm(W,b) h → Relu y [batch,3]; returns the model, W and b."""
    w, b = f32(3, 4), f32(3)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["y"])]
    return make(nodes, [vi("x", [batch, 4])], [vi("y", [batch, 3])], {"W": w, "b": b}), w, b


def two_input_model() -> onnx.ModelProto:
    """a [N,4] float32, k [N,4] int64 → y = a * Cast(k)."""
    nodes = [helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["a", "kf"], ["y"])]
    return make(nodes, [vi("a", ["N", 4]), vi("k", ["N", 4], TensorProto.INT64)], [vi("y", ["N", 4])])


@pytest.fixture
def mk() -> SimpleNamespace:
    return SimpleNamespace(make=make, vi=vi, f32=f32, conv_model=conv_model, gemm_model=gemm_model,
                           two_input_model=two_input_model, load=load_onnx)
