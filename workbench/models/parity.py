"""Parity of a converted model: onnxruntime on the ONNX graph vs the model's own runtime.

``sqnr_db = 10·log10(Σ src² / Σ (src − onnx)²)`` per model output, accumulated over all feeds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from workbench.errors import WorkbenchError
from workbench.models.onnx_model import LoadedModel
from workbench.numerics import ErrorAccumulator
from workbench.runtime import Runner

__all__ = ["measure_parity"]


def measure_parity(model: LoadedModel, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """Output name → SQNR (dB) of onnxruntime's outputs against the source runtime's on ``feeds``.

    Also stored on ``model.parity_sqnr_db``. Raises WorkbenchError for a model that was not
    converted (it has no source runtime to compare with)."""
    if model.source_runtime is None:
        raise WorkbenchError(f"{model.source}: a {model.format} model has no source runtime to compare with; "
                             "parity applies to converted (TFLite, PyTorch) models")
    runner = Runner(model.proto)
    errors = {o.name: ErrorAccumulator() for o in model.outputs}
    for feed in feeds:
        ours = runner.run(feed)
        theirs = model.source_runtime(feed)
        for name, acc in errors.items():
            acc.update(np.asarray(theirs[name], dtype=np.float64), ours[name])
    if not any(acc.count for acc in errors.values()):
        raise WorkbenchError(f"{model.source}: no data to measure parity on; pass at least one sample")
    model.parity_sqnr_db = {name: acc.sqnr_db for name, acc in errors.items()}
    return model.parity_sqnr_db
