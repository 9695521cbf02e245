"""Model loading: ONNX files, bytes and protos, PyTorch modules and .pt2 programs → a checked :class:`LoadedModel`."""

from workbench.models.onnx_model import LoadedModel, TensorInfo, load_model, load_onnx, upgrade_opset
from workbench.models.pytorch import load_torch

__all__ = ["LoadedModel", "TensorInfo", "load_model", "load_onnx", "load_torch", "upgrade_opset"]
