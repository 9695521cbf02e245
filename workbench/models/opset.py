"""Read and raise the default-domain (ai.onnx) opset of a model."""

from __future__ import annotations

import re

import onnx
from onnx import defs, helper, shape_inference, version_converter

from workbench.errors import WorkbenchError
from workbench.models import large

DEFAULT_DOMAINS = ("", "ai.onnx")


def opset_of(proto: onnx.ModelProto) -> int:
    """The model's ai.onnx opset version; WorkbenchError if it imports none."""
    for imp in proto.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            return int(imp.version)
    raise WorkbenchError("the model imports no ai.onnx opset (opset_import has no default domain); "
                         "re-export it with a standard ONNX exporter")


def upgrade_opset(proto: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Return ``proto`` converted to ai.onnx opset ``target`` (unchanged if already there or above).

    Uses onnx.version_converter, bumps the IR version if the new opset needs it and re-runs shape
    inference so ``graph.value_info`` stays filled. WorkbenchError naming the op when conversion fails.
    """
    current = opset_of(proto)
    if current >= target:
        return proto
    if target > defs.onnx_opset_version():
        raise WorkbenchError(f"cannot upgrade to opset {target}: this onnx {onnx.__version__} supports "
                             f"up to opset {defs.onnx_opset_version()}")
    if large.is_large(proto):
        raise WorkbenchError(f"cannot upgrade a model over 2 GB from opset {current} to {target} in memory; "
                             "upgrade it before adding weights, or export it at the target opset")
    try:
        converted = version_converter.convert_version(proto, target)
    except Exception as e:  # the converter raises RuntimeError/IndexError/... with C++ assertion text
        raise WorkbenchError(_conversion_failure(proto, current, target, e)) from None
    needed = helper.find_min_ir_version_for(list(converted.opset_import), ignore_unknown=True)
    converted.ir_version = max(converted.ir_version, needed)
    try:
        converted = shape_inference.infer_shapes(converted, strict_mode=False, data_prop=True)
    except Exception as e:
        raise WorkbenchError(f"after upgrading opset {current} → {target}, shape inference failed: "
                             f"{clean_message(e)}") from None
    return converted


def clean_message(err: BaseException) -> str:
    """First meaningful line of an onnx/onnxruntime error, without source paths and status codes."""
    text = str(err).strip() or type(err).__name__
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    text = re.sub(r"^.*?Assertion `.*?` failed:\s*", "", text, flags=re.S)
    text = re.sub(r"^/\S+:\d+\s+\S+\s*", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def _conversion_failure(proto: onnx.ModelProto, current: int, target: int, err: Exception) -> str:
    msg = clean_message(err)
    op_types = sorted({(n.domain, n.op_type) for n in proto.graph.node}, key=lambda d: -len(d[1]))
    named = [op for dom, op in op_types if re.search(rf"\b{re.escape(op)}(?![a-z])", msg)]
    if not named:  # fall back to ops the converter cannot know: no schema at the model's opset
        named = [op for dom, op in op_types
                 if dom in DEFAULT_DOMAINS and not defs.has(op, dom or "")]
    where = f"op {', '.join(sorted(set(named)))}" if named else "an op in the model"
    return (f"cannot upgrade the model from opset {current} to {target}: {where} could not be converted "
            f"({msg}); re-export the model at opset {target} or newer")
