"""The original ``.tflite`` in the TFLite interpreter (ai-edge-litert): the oracle for the importer.

A model with a fixed batch of 1 runs sample by sample; one whose input signature has a dynamic
batch is resized to the feed's batch. Outputs come back stacked along axis 0 in TFLite layout,
which is the layout of the imported ONNX model's outputs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

__all__ = ["TfliteRuntime"]


class TfliteRuntime:
    """Callable ``feed → outputs``: ``inputs``/``outputs`` map TFLite tensor index → ONNX name."""

    def __init__(self, path: str | os.PathLike, inputs: Mapping[int, str], outputs: Mapping[int, str]) -> None:
        self.path = os.fspath(path)
        self.inputs = dict(inputs)
        self.outputs = dict(outputs)
        self._interpreters: dict[bool, Any] = {}

    def __repr__(self) -> str:
        return f"TfliteRuntime({self.path!r})"

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs keyed by ONNX output name, for a feed keyed by ONNX input name."""
        got = self.run(feed, list(self.outputs))
        return {self.outputs[i]: got[i] for i in self.outputs}

    def run(self, feed: Mapping[str, np.ndarray], tensors: list[int], *, all_tensors: bool = False
            ) -> dict[int, np.ndarray]:
        """The given TFLite tensors (by index) after running ``feed``; ``all_tensors`` keeps every
        intermediate (``experimental_preserve_all_tensors``). Tensors the interpreter cannot read
        back (e.g. freed inside a delegate) are left out."""
        it = self._interpreter(all_tensors)
        arrays = {}
        for idx, name in self.inputs.items():
            if name not in feed:
                raise WorkbenchError(f"{self.path}: the feed has no input {name!r} (it has {sorted(feed)})")
            arrays[idx] = np.asarray(feed[name])
        n = len(next(iter(arrays.values())))
        details = {d["index"]: d for d in it.get_input_details()}
        dynamic = all(len(d["shape_signature"]) and d["shape_signature"][0] == -1 for d in details.values())
        batches = [slice(0, n)] if dynamic else [slice(i, i + 1) for i in range(n)]
        parts: dict[int, list[np.ndarray]] = {i: [] for i in tensors}
        if dynamic:
            for idx in arrays:
                it.resize_tensor_input(idx, [n, *details[idx]["shape"][1:]])
            it.allocate_tensors()
        for sl in batches:
            for idx, a in arrays.items():
                it.set_tensor(idx, np.ascontiguousarray(a[sl], dtype=details[idx]["dtype"]))
            it.invoke()
            for i in tensors:
                try:
                    parts[i].append(np.array(it.get_tensor(i)))
                except ValueError:  # "Tensor data is null": not kept by the interpreter
                    parts.pop(i, None)
            tensors = [i for i in tensors if i in parts]
        return {i: np.concatenate(p) if len(p) > 1 else p[0] for i, p in parts.items()}

    def _interpreter(self, all_tensors: bool) -> Any:
        if all_tensors not in self._interpreters:
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                raise WorkbenchError("running the original .tflite needs the TFLite interpreter; "
                                     "pip install 'workbench[tflite]' (ai-edge-litert)") from None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # preserve_all_tensors: "for debugging only"
                    it = Interpreter(model_path=self.path, experimental_preserve_all_tensors=all_tensors)
                it.allocate_tensors()
            except (RuntimeError, ValueError) as e:
                detail = " ".join(str(e).split())[:300]
                raise WorkbenchError(f"{self.path}: the TFLite interpreter cannot load the model ({detail})") \
                    from None
            self._interpreters[all_tensors] = it
        return self._interpreters[all_tensors]
