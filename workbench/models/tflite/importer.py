"""TFLite → ONNX: read the flatbuffer, convert op by op, validate through :func:`load_onnx`.

The ONNX graph takes and returns the TFLite layouts (NHWC images in, TFLite-shaped outputs), with
one Transpose to NCHW after each image input and one back before each NHWC consumer that needs
it (RESHAPE, outputs). In between, Conv/pooling/elementwise ops run NCHW, so BN folding and
per-channel quantization see ordinary ONNX Convs. Every converted op's output keeps its TFLite
tensor name. A batch-1 TFLite model gets a dynamic batch axis ``N`` unless some op mixes axis 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from workbench.errors import WorkbenchError
from workbench.models.onnx_model import LoadedModel, load_onnx
from workbench.models.tflite.builder import Builder, Value
from workbench.models.tflite.layout import Layout
from workbench.models.tflite.reader import TfliteModel, read_tflite
from workbench.models.tflite.registry import CONVERTERS, SUPPORTED_CUSTOM, SUPPORTED_OPS

__all__ = ["OPSET", "Conversion", "convert", "load_tflite", "tflite_to_onnx"]

OPSET = 21  # the opset graph.prepare lifts every model to (HardSwish ≥ 14, Resize axes ≥ 18)
_IR_VERSION = 10
BATCH = "N"


@dataclass
class Conversion:
    """The ONNX model and, per converted TFLite tensor (by index), its ONNX value and layout."""

    proto: onnx.ModelProto
    model: TfliteModel
    values: dict[int, Value]
    names: dict[int, str]  # TFLite tensor index → its (unique) ONNX name
    dynamic_batch: bool
    notes: list[str] = field(default_factory=list)


def tflite_to_onnx(path: str | os.PathLike) -> Conversion:
    """Read and convert ``path``; every failure is a one-line WorkbenchError naming the file."""
    model = read_tflite(path)
    try:
        return convert(model)
    except WorkbenchError as e:
        raise WorkbenchError(f"{model.path}: {e}") from None


def load_tflite(path: str | os.PathLike) -> LoadedModel:
    """A :class:`LoadedModel` of ``path`` (format ``tflite``) whose ``source_runtime`` runs the
    original file in the TFLite interpreter."""
    from workbench.models.tflite.interpreter import TfliteRuntime

    conv = tflite_to_onnx(path)
    try:
        loaded = load_onnx(conv.proto)
    except WorkbenchError as e:
        raise WorkbenchError(f"{conv.model.path}: the converted ONNX graph does not validate "
                             f"({str(e).removeprefix('<ModelProto>: ')}); report this model as an importer bug") \
            from None
    loaded.source = conv.model.path
    loaded.format = "tflite"
    loaded.notes.extend(conv.notes)
    loaded.source_runtime = TfliteRuntime(conv.model.path, {i: conv.names[i] for i in conv.model.inputs},
                                          {i: conv.names[i] for i in conv.model.outputs})
    return loaded


def _check_float(model: TfliteModel) -> None:
    """Quantized activations or weights used without DEQUANTIZE mean an integer model."""
    dequantized = {op.inputs[0] for op in model.operators if op.opcode == "DEQUANTIZE" and op.inputs}
    for t in model.tensors:
        if t.quantization is None or t.dtype is None or t.dtype.kind not in "iu":
            continue
        if t.data is not None and t.index in dequantized:
            continue  # int8 weights DEQUANTIZEd to float: folded at import
        raise WorkbenchError(
            f"tensor {t.name!r} is {t.type_name}-quantized (scale {float(t.quantization.scale.ravel()[0]):.3g}): "
            "quantized TFLite models are not supported yet; import the float .tflite model (converted "
            "without tf.lite.Optimize) or its ONNX/PyTorch original and quantize it here")


def _unsupported(b: Builder, kind: str, out: str) -> WorkbenchError:
    assert b.op is not None
    where = f"operator {b.op.index} ({kind}, output {out!r})"
    if kind.startswith("CUSTOM:"):
        return WorkbenchError(f"{where}: custom op {kind[7:]!r} is not supported by the TFLite importer; "
                              f"supported custom ops: {', '.join(SUPPORTED_CUSTOM)}; convert the model without it")
    return WorkbenchError(f"{where} is not supported by the TFLite importer; supported ops: "
                          f"{', '.join(SUPPORTED_OPS)}")


def convert(model: TfliteModel) -> Conversion:
    """ONNX ModelProto (opset 21) for the main subgraph of ``model``."""
    _check_float(model)
    b = Builder(model)
    notes = []
    if model.subgraphs > 1:
        notes.append(f"the TFLite file has {model.subgraphs} subgraphs; only the main one was imported")
    for idx in model.inputs:
        t = b.tensor(idx)
        if t.dtype is None:
            raise WorkbenchError(f"model input {t.name!r} has type {t.type_name}, which ONNX cannot feed")
        batched = bool(t.shape) and (t.shape[0] == 1 or t.signature[0] == -1)
        b.values[idx] = Value(b.claim(idx), Layout.PLAIN, batched)
        if any(d == -1 for d in t.signature[1:]):
            notes.append(f"input {t.name!r}: dynamic dims {list(t.signature)} fixed to {list(t.shape)}")
    for op in model.operators:
        b.op = op
        converter = CONVERTERS.get(op.kind)
        if converter is None:
            raise _unsupported(b, op.kind, b.name_of(op.outputs[0]) if op.outputs else "?")
        converter(b, op)
    b.op = None
    out_names = [b.get(idx, Layout.PLAIN) for idx in model.outputs]
    dynamic = not b.batch_breaks and all(b.batched(i) for i in model.inputs)
    if b.batch_breaks:
        notes.append(f"batch fixed at 1: {b.batch_breaks[0]}")

    def info(idx: int, name: str) -> onnx.ValueInfoProto:
        t = b.tensor(idx)
        dims: list[int | str] = list(t.shape)
        if dynamic and dims and b.batched(idx):
            dims[0] = BATCH
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(t.dtype or np.dtype(np.float32)),
                                             dims)

    graph = helper.make_graph(b.nodes, _graph_name(model), [info(i, b.values[i].name) for i in model.inputs],
                              [info(i, n) for i, n in zip(model.outputs, out_names, strict=True)],
                              b.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=_IR_VERSION,
                              producer_name="workbench.tflite", doc_string=model.description)
    names = {t.index: b.name_of(t.index) for t in model.tensors}
    return Conversion(proto=proto, model=model, values=dict(b.values), names=names, dynamic_batch=dynamic,
                      notes=notes)


def _graph_name(model: TfliteModel) -> str:
    return os.path.splitext(os.path.basename(model.path))[0] or "tflite"
