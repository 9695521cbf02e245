"""workbench: see and fix what quantization does to every layer of a model.

    from workbench import Session
    s = Session("model.onnx", target="ort-cpu")
    s.calibrate("calib.npz"); s.compare("eval.npz"); s.export("model.qdq.onnx")

Importing this package loads neither torch nor bokeh nor ipywidgets; submodules load on use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Session": "workbench.session",
    "Recipe": "workbench.recipe",
    "TensorSpec": "workbench.recipe",
    "LayerSpec": "workbench.recipe",
    "Precision": "workbench.recipe",
    "Symmetry": "workbench.recipe",
    "PerTensor": "workbench.recipe",
    "PerChannel": "workbench.recipe",
    "MinMax": "workbench.recipe",
    "Percentile": "workbench.recipe",
    "Entropy": "workbench.recipe",
    "Mse": "workbench.recipe",
    "Auto": "workbench.recipe",
    "ClipRange": "workbench.recipe",
    "WorkbenchError": "workbench.errors",
    "TARGETS": "workbench.targets",
    "load_model": "workbench.models",
}

__all__ = sorted(_LAZY)

def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
