"""Model loading: ONNX files, bytes and protos into a checked :class:`LoadedModel`."""

from workbench.models.onnx_model import LoadedModel, TensorInfo, load_model, load_onnx, upgrade_opset

__all__ = ["LoadedModel", "TensorInfo", "load_model", "load_onnx", "upgrade_opset"]
