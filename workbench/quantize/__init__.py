"""Recipe + statistics -> a QDQ ONNX graph, and reading its parameters back."""

from workbench.quantize.plan import QuantPlan, TensorPlan, build_plan, layer_specs
from workbench.quantize.qdq import QdqModel, build_qdq
from workbench.quantize.verify import read_qdq_params, verify_qdq

__all__ = ["QdqModel", "QuantPlan", "TensorPlan", "build_plan", "build_qdq", "layer_specs",
           "read_qdq_params", "verify_qdq"]
