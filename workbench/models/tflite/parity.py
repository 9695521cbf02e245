"""Layer-by-layer parity of an imported TFLite model with the TFLite interpreter, by tensor name.

The interpreter keeps every intermediate (``experimental_preserve_all_tensors``); onnxruntime
exposes the same tensors by name (:class:`workbench.runtime.Runner`). NCHW values are transposed
back to NHWC before ``sqnr_db = 10·log10(Σ tflite² / Σ (tflite − onnx)²)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from workbench.models.onnx_model import LoadedModel
from workbench.models.tflite.importer import tflite_to_onnx
from workbench.models.tflite.interpreter import TfliteRuntime
from workbench.models.tflite.layout import TO_NHWC, Layout
from workbench.numerics import sqnr_db
from workbench.runtime import Runner

__all__ = ["intermediate_parity"]


def intermediate_parity(path: str | os.PathLike, loaded: LoadedModel, feed: Mapping[str, np.ndarray]
                        ) -> dict[str, float]:
    """TFLite tensor name → SQNR (dB) of onnxruntime against the interpreter, for every float
    tensor written by a converted op (folded constants excluded) that the interpreter kept."""
    conv = tflite_to_onnx(path)
    graph_values = {o for n in loaded.proto.graph.node for o in n.output}
    wanted = {idx: v for idx, v in conv.values.items()
              if v.name in graph_values and (conv.model.tensors[idx].dtype or np.dtype(object)).kind == "f"}
    runtime = loaded.source_runtime
    if not isinstance(runtime, TfliteRuntime):
        runtime = TfliteRuntime(path, {i: conv.names[i] for i in conv.model.inputs},
                                {i: conv.names[i] for i in conv.model.outputs})
    theirs = runtime.run(feed, sorted(wanted), all_tensors=True)
    ours = Runner(loaded.proto, outputs=[wanted[i].name for i in theirs]).run(feed)
    out = {}
    for idx, ref in theirs.items():
        got = ours[wanted[idx].name]
        if wanted[idx].layout is Layout.NCHW:
            got = got.transpose(TO_NHWC)
        out[conv.names[idx]] = sqnr_db(ref, got)
    return out
