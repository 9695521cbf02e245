"""Float vs quantized, tensor by tensor."""

from workbench.analysis.compare import Comparison, LayerRow, compare

__all__ = ["Comparison", "LayerRow", "compare"]
