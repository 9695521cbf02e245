"""TFLite → ONNX importer (``load_model("x.tflite")``), with the TFLite interpreter as its oracle.

Modules: ``reader`` (flatbuffer → dataclasses; ``sparse`` densifies), ``layout`` (NHWC ↔ NCHW),
``builder`` (the ONNX graph under construction), ``ops_nn``/``ops_math``/``ops_shape`` (one
converter per TFLite op; ``registry`` lists them), ``importer`` (entry points), ``interpreter``
(the original model in ai-edge-litert), ``parity`` (tensor-by-tensor comparison), ``metadata``
(input normalization declared in the file). Nothing here is imported by ``import workbench``;
the ``tflite`` and ``ai_edge_litert`` packages are imported only when a model is read or run.
"""

from workbench.models.tflite.importer import Conversion, load_tflite, tflite_to_onnx
from workbench.models.tflite.registry import SUPPORTED_CUSTOM, SUPPORTED_OPS

__all__ = ["SUPPORTED_CUSTOM", "SUPPORTED_OPS", "Conversion", "load_tflite", "tflite_to_onnx"]
