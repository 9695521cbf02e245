"""Which TFLite ops the importer converts: op kind (``CONV_2D``, ``CUSTOM:<code>``) → converter."""

from __future__ import annotations

from collections.abc import Callable

from workbench.models.tflite import ops_math, ops_nn, ops_shape
from workbench.models.tflite.builder import Builder
from workbench.models.tflite.reader import Operator

__all__ = ["CONVERTERS", "SUPPORTED_CUSTOM", "SUPPORTED_OPS"]

CONVERTERS: dict[str, Callable[[Builder, Operator], None]] = {
    **ops_nn.CONVERTERS, **ops_math.CONVERTERS, **ops_shape.CONVERTERS,
}
SUPPORTED_OPS = tuple(sorted(k for k in CONVERTERS if not k.startswith("CUSTOM:")))
SUPPORTED_CUSTOM = tuple(sorted(k.split(":", 1)[1] for k in CONVERTERS if k.startswith("CUSTOM:")))
