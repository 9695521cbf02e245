"""Check a model three ways: onnx.checker, shape inference, and loading it in onnxruntime.

Each check takes an optional ``path``: the model saved with external data (see
:func:`workbench.models.large.model_file`), which models over 2 GB need.
"""

from __future__ import annotations

import onnx
import onnxruntime as ort
from onnx import shape_inference

from workbench.models.opset import clean_message


def check(proto: onnx.ModelProto, path: str | None = None) -> str | None:
    """onnx.checker's complaint about the model (None when it passes)."""
    try:
        onnx.checker.check_model(path if path else proto)
    except Exception as e:  # ValidationError, or C++ errors surfaced as other types
        return clean_message(e)
    return None


def infer_shapes(proto: onnx.ModelProto, path: str | None = None) -> tuple[onnx.ModelProto, str | None]:
    """The model with inferred ``value_info`` (non-strict), plus what strict inference complained about."""
    if path:
        return _infer_file(proto, path)
    try:
        return shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True), None
    except Exception as e:
        strict_error = clean_message(e)
    try:
        inferred = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception:
        inferred = proto
    return inferred, strict_error


def _infer_file(proto: onnx.ModelProto, path: str) -> tuple[onnx.ModelProto, str | None]:
    out = path + ".inferred.onnx"
    error = None
    try:
        shape_inference.infer_shapes_path(path, out, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        error = clean_message(e)
        try:
            shape_inference.infer_shapes_path(path, out, strict_mode=False, data_prop=True)
        except Exception:
            return proto, error
    inferred = onnx.load(out, load_external_data=False)
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(inferred.graph.value_info)
    return proto, error


def ort_load_error(proto: onnx.ModelProto, path: str | None = None) -> str | None:
    """Why onnxruntime (CPU, no graph optimisation) cannot build a session for the model; None if it can."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    try:
        model = path if path else proto.SerializeToString()
        ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        return clean_message(e)
    return None
