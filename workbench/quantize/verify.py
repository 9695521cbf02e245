"""Read quantization parameters back from a QDQ graph and check them against the plan:
the file written must quantize exactly the planned tensors with exactly the planned
scales, zero-points, types and axes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.quantize.plan import QuantPlan

_ONNX_TO_BITS = {
    onnx.TensorProto.INT4: (4, True), onnx.TensorProto.UINT4: (4, False),
    onnx.TensorProto.INT8: (8, True), onnx.TensorProto.UINT8: (8, False),
    onnx.TensorProto.INT16: (16, True), onnx.TensorProto.UINT16: (16, False),
    onnx.TensorProto.INT32: (32, True),
}


@dataclass(frozen=True)
class ReadParams:
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int
    signed: bool
    axis: int | None


def read_qdq_params(model: onnx.ModelProto) -> dict[str, ReadParams]:
    """Tensor name -> parameters, from every QuantizeLinear (activations, keyed by the float
    tensor it reads), every DequantizeLinear of an initializer (weights/bias) and every
    DequantizeLinear that reads another tensor's integers with parameters of its own (a dropped
    scalar affine chain); those two keyed by the DQ output's name as written in the file."""
    inits = {t.name: t for t in model.graph.initializer}
    q_params = {n.output[0]: (n.input[1], n.input[2]) for n in model.graph.node if n.op_type == "QuantizeLinear"}
    out: dict[str, ReadParams] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] not in inits and (
                q_params.get(node.input[0]) == (node.input[1], node.input[2])):
            continue
        zp_t = inits[node.input[2]]
        bits, signed = _ONNX_TO_BITS[zp_t.data_type]
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        scale = numpy_helper.to_array(inits[node.input[1]])
        key = node.input[0] if node.op_type == "QuantizeLinear" else node.output[0]
        out[key] = ReadParams(scale, numpy_helper.to_array(zp_t).astype(np.int64), bits, signed,
                              axis if scale.ndim else None)
    return out


def verify_qdq(model: onnx.ModelProto, plan: QuantPlan, effective: dict[str, str]) -> list[str]:
    """Mismatches between ``model`` and ``plan`` (empty when the file is exactly the plan)."""
    found = read_qdq_params(model)
    problems = []
    expected = set()
    for t in plan.tensors.values():
        key = t.name if t.kind == "activation" and t.name not in plan.affine_sources else effective[t.name]
        expected.add(key)
        got = found.get(key)
        qp = t.qparams
        if got is None:
            problems.append(f"{t.name}: not quantized in the file")
        elif (got.bits, got.signed) != (qp.bits, qp.signed):
            problems.append(f"{t.name}: {got.bits}-bit signed={got.signed} in the file, plan says "
                            f"{qp.bits}-bit signed={qp.signed}")
        elif not (np.array_equal(got.scale, np.asarray(qp.scale, np.float32))
                  and np.array_equal(got.zero_point, np.asarray(qp.zero_point, np.int64))):
            problems.append(f"{t.name}: scale/zero-point in the file differ from the plan")
        elif got.axis != qp.axis:
            problems.append(f"{t.name}: axis {got.axis} in the file, plan says {qp.axis}")
    for name in plan.bias_scales:
        expected.add(effective[name])
        if effective[name] not in found:
            problems.append(f"{name}: bias not quantized in the file")
    problems += [f"{k}: quantized in the file but not in the plan" for k in sorted(set(found) - expected)]
    return problems
