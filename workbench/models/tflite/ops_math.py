"""Converters for elementwise ops, activations, softmax and the constant-folded DEQUANTIZE/DENSIFY.

Elementwise ops work in any layout: when a run-time operand is NCHW (and every run-time operand is
rank 4), the op stays NCHW and constant operands are reshaped to broadcast against the NCHW form
(``[C]`` or ``[1,1,C]`` → ``[1,C,1,1]``). DEQUANTIZE and DENSIFY of constants are folded at import:
fp16 weights become float32 initializers, int8 weights ``scale·(q − zero_point)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workbench.models.tflite.builder import Builder
from workbench.models.tflite.layout import Layout
from workbench.models.tflite.reader import Operator

__all__ = ["CONVERTERS", "operand_layout"]


def operand_layout(b: Builder, idxs: tuple[int, ...] | list[int]) -> Layout:
    """NCHW when some run-time operand is NCHW and all run-time operands are rank 4 (constants of
    rank ≤ 4 broadcast either way); PLAIN otherwise."""
    live = [i for i in idxs if i >= 0 and i in b.values]
    if not any(b.layout(i) is Layout.NCHW for i in live) or any(len(b.shape(i)) != 4 for i in live):
        return Layout.PLAIN
    return Layout.NCHW


def _check_batch_broadcast(b: Builder, op: Operator) -> None:
    """A non-batched operand with a leading axis > 1 of full rank would mix samples."""
    ins = [i for i in op.inputs if i >= 0]
    if not any(b.batched(i) for i in ins):
        return
    rank = len(b.shape(op.outputs[0]))
    for i in ins:
        shape = b.shape(i)
        if not b.batched(i) and len(shape) == rank and rank and shape[0] != 1:
            b.break_batch(f"operand {b.name_of(i)!r} has leading axis {shape[0]}, not a batch of 1")


def _binary(onnx_op: str) -> Callable[[Builder, Operator], None]:
    def convert(b: Builder, op: Operator) -> None:
        layout = operand_layout(b, op.inputs)
        _check_batch_broadcast(b, op)
        b.emit(onnx_op, [b.get_bcast(i, layout) for i in op.inputs], op.outputs[0], layout,
               act=op.options.get("fused_activation_function", 0))

    return convert


def _squared_difference(b: Builder, op: Operator) -> None:
    layout = operand_layout(b, op.inputs)
    _check_batch_broadcast(b, op)
    diff = b.fresh(b.name_of(op.outputs[0]) + "/diff")
    b.node("Sub", [b.get_bcast(i, layout) for i in op.inputs], [diff], b.node_name(op.outputs[0], "/sub"))
    b.emit("Mul", [diff, diff], op.outputs[0], layout)


def _unary(onnx_op: str, **attrs: object) -> Callable[[Builder, Operator], None]:
    def convert(b: Builder, op: Operator) -> None:
        x = op.inputs[0]
        b.emit(onnx_op, [b.get(x)], op.outputs[0], b.layout(x), **attrs)

    return convert


def _clip(lo: float, hi: float) -> Callable[[Builder, Operator], None]:
    def convert(b: Builder, op: Operator) -> None:
        x = op.inputs[0]
        b.emit("Clip", [b.get(x), b.scalar(lo), b.scalar(hi)], op.outputs[0], b.layout(x))

    return convert


def _leaky_relu(b: Builder, op: Operator) -> None:
    x = op.inputs[0]
    b.emit("LeakyRelu", [b.get(x)], op.outputs[0], b.layout(x), alpha=float(op.options.get("alpha", 0.2)))


def _gelu(b: Builder, op: Operator) -> None:
    x = op.inputs[0]
    b.emit("Gelu", [b.get(x)], op.outputs[0], b.layout(x),
           approximate="tanh" if op.options.get("approximate") else "none")


def _rsqrt(b: Builder, op: Operator) -> None:
    x = op.inputs[0]
    root = b.fresh(b.name_of(op.outputs[0]) + "/sqrt")
    b.node("Sqrt", [b.get(x)], [root], b.node_name(op.outputs[0], "/sqrt"))
    b.emit("Reciprocal", [root], op.outputs[0], b.layout(x))


def _square(b: Builder, op: Operator) -> None:
    x = op.inputs[0]
    b.emit("Mul", [b.get(x), b.get(x)], op.outputs[0], b.layout(x))


def _prelu(b: Builder, op: Operator) -> None:
    """``y = x if x ≥ 0 else α·x``; α (often an fp16 constant through DEQUANTIZE) broadcasts like ADD."""
    layout = operand_layout(b, op.inputs)
    b.emit("PRelu", [b.get_bcast(op.inputs[0], layout), b.get_bcast(op.inputs[1], layout)], op.outputs[0], layout)


def _softmax(log: bool) -> Callable[[Builder, Operator], None]:
    """softmax(β·x) over the last TFLite axis (the channel axis 1 of an NCHW value)."""
    def convert(b: Builder, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        layout = b.layout(x)
        src = b.get(x)
        beta = float(op.options.get("beta", 1.0))
        if beta != 1.0:
            scaled = b.fresh(b.name_of(out) + "/scaled")
            b.node("Mul", [src, b.scalar(beta)], [scaled], b.node_name(out, "/beta"))
            src = scaled
        b.emit("LogSoftmax" if log else "Softmax", [src], out, layout, axis=1 if layout is Layout.NCHW else -1)

    return convert


def _dequantize(b: Builder, op: Operator) -> None:
    x, out = op.inputs[0], op.outputs[0]
    value = b.const(x)
    if value is None:
        raise b.unsupported("DEQUANTIZE of a run-time tensor: this is a quantized TFLite model, which the "
                            "importer does not read yet; import the float .tflite model and quantize it here")
    dtype = b.tensor(out).dtype or np.dtype(np.float32)
    q = b.tensor(x).quantization
    if q is not None and value.dtype.kind in "iu":
        shape = [1] * value.ndim
        if q.scale.size > 1:
            shape[q.axis] = q.scale.size
        scale = q.scale.reshape(shape).astype(np.float64)
        zero = q.zero_point.reshape(shape).astype(np.float64) if q.zero_point.size else 0.0
        b.consts[out] = ((value.astype(np.float64) - zero) * scale).astype(dtype)
    else:
        b.consts[out] = value.astype(dtype)


def _densify(b: Builder, op: Operator) -> None:
    b.consts[op.outputs[0]] = b.need_const(op.inputs[0], "sparse input")  # densified when read


CONVERTERS: dict[str, Callable[[Builder, Operator], None]] = {
    "ADD": _binary("Add"),
    "SUB": _binary("Sub"),
    "MUL": _binary("Mul"),
    "DIV": _binary("Div"),
    "MAXIMUM": _binary("Max"),
    "MINIMUM": _binary("Min"),
    "POW": _binary("Pow"),
    "SQUARED_DIFFERENCE": _squared_difference,
    "RELU": _unary("Relu"),
    "RELU6": _clip(0.0, 6.0),
    "RELU_N1_TO_1": _clip(-1.0, 1.0),
    "RELU_0_TO_1": _clip(0.0, 1.0),
    "LOGISTIC": _unary("Sigmoid"),
    "TANH": _unary("Tanh"),
    "HARD_SWISH": _unary("HardSwish"),
    "ELU": _unary("Elu"),
    "EXP": _unary("Exp"),
    "LOG": _unary("Log"),
    "SQRT": _unary("Sqrt"),
    "ABS": _unary("Abs"),
    "NEG": _unary("Neg"),
    "FLOOR": _unary("Floor"),
    "CEIL": _unary("Ceil"),
    "RSQRT": _rsqrt,
    "SQUARE": _square,
    "LEAKY_RELU": _leaky_relu,
    "GELU": _gelu,
    "PRELU": _prelu,
    "SOFTMAX": _softmax(log=False),
    "LOG_SOFTMAX": _softmax(log=True),
    "DEQUANTIZE": _dequantize,
    "DENSIFY": _densify,
}
