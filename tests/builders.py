"""Small real ONNX graphs built in code for tests (random weights, real onnxruntime runs)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def conv_net(seed: int = 0, opset: int = 13, batch: int | str = "N") -> onnx.ModelProto:
    """x[N,3,16,16] → Conv-BN-Relu → depthwise Conv-Relu → 1x1 Conv + residual Add → MaxPool
    → Concat with itself·Mul → GlobalAveragePool → Flatten → Gemm → logits[N,10]."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("c1.w", rng.normal(0, 0.3, (8, 3, 3, 3))), _init("c1.b", rng.normal(0, 0.1, 8)),
        _init("bn.g", rng.uniform(0.5, 1.5, 8)), _init("bn.b", rng.normal(0, 0.1, 8)),
        _init("bn.m", rng.normal(0, 0.1, 8)), _init("bn.v", rng.uniform(0.5, 2, 8)),
        _init("dw.w", rng.normal(0, 0.5, (8, 1, 3, 3)) * rng.uniform(0.05, 3, (8, 1, 1, 1))),
        _init("dw.b", rng.normal(0, 0.1, 8)),
        _init("pw.w", rng.normal(0, 0.3, (8, 8, 1, 1))), _init("pw.b", rng.normal(0, 0.1, 8)),
        _init("scale", np.array([0.5])),
        _init("fc.w", rng.normal(0, 0.3, (10, 16))), _init("fc.b", rng.normal(0, 0.1, 10)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn.g", "bn.b", "bn.m", "bn.v"], ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "dw.w", "dw.b"], ["dw"], name="dwconv", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["dw"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "pw.w", "pw.b"], ["pw"], name="pwconv"),
        helper.make_node("Add", ["pw", "r1"], ["res"], name="add"),
        helper.make_node("MaxPool", ["res"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["mp", "scale"], ["half"], name="mul"),
        helper.make_node("Concat", ["mp", "half"], ["cat"], name="concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def one_io_model(name: str, nodes: list, inits: list, x_shape: list, y_shape: list, *, opset: int = 13,
                 x: str = "x", y: str = "y") -> onnx.ModelProto:
    """A float model with one input ``x`` and one output ``y`` around ``nodes`` (IR version 8)."""
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def conv_net_data(n: int = 64, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 3, 16, 16)).astype(np.float32)
